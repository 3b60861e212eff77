"""The `thinker` command line: commands live in `thinker/commands/`, one per file, joined here.

    thinker tasks
    thinker train addition --device cpu
    thinker sweep addition --trials 50
    thinker bench --device cuda

Known errors (bad input, a missing GPU, an unreadable file) are one line on stderr and exit code 2;
set THINKER_DEBUG=1 to see a traceback for anything unexpected.
"""

from __future__ import annotations

import os
import sys

import typer

from thinker.commands import bench, report, sweep, tasks, train
from thinker.errors import UsageError

app = typer.Typer(
    name="thinker",
    help="Train, sweep and benchmark the thinker model on algorithmic tasks.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
for module in (tasks, train, sweep, report, bench):
    module.register(app)


def main() -> None:
    """Console entry point: every error becomes one line, bad input exits 2."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=sys.argv[1:], prog_name="thinker", standalone_mode=False)
    except UsageError as e:
        print(f"thinker: error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("thinker: interrupted", file=sys.stderr)
        code = 130
    except Exception as e:
        code = _report(e)
    sys.exit(code or 0)


def _report(error: Exception) -> int:
    """One line for an exception that escaped a command; the exit code to use."""
    # Click-style errors (bad option value, missing argument). Typer may vendor its own copy of
    # click, so they are recognised by shape rather than by class.
    if hasattr(error, "format_message") and hasattr(error, "exit_code"):
        if type(error).__name__ == "NoArgsIsHelpError":
            print(error.format_message(), file=sys.stderr)
            return 0
        print(f"thinker: error: {error.format_message()}", file=sys.stderr)
        return 2
    if type(error).__name__ == "Abort":  # Ctrl-C at a prompt
        print("thinker: interrupted", file=sys.stderr)
        return 130
    if os.environ.get("THINKER_DEBUG"):
        raise error
    print(f"thinker: internal error: {type(error).__name__}: {error} (THINKER_DEBUG=1 shows the traceback)",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    main()
