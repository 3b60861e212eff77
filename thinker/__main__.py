"""`python -m thinker ...` runs the CLI from a source tree (no install needed)."""

from thinker.cli import main

main()
