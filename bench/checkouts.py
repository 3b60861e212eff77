"""Other checkouts of this repository, to run their code side by side with this one's (`bench.sweep --against`).

    with worktree("9641b74") as checkout:
        subprocess.run([sys.executable, "-S", "-m", "thinker", "sweep", ...], env=run_from(checkout))
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from thinker.bench.args import fail

ROOT = Path(__file__).resolve().parent.parent


def run_from(source: Path) -> dict[str, str]:
    """The environment that makes `python -S -m thinker` run the code in the checkout `source`.

    `-S` skips site-packages' .pth files, so an installed (editable) thinker's import hook cannot hand
    out its own `thinker.sweeps` to another checkout; this process's import path, site-packages
    included, follows the checkout. Spawned sweep workers inherit both.
    """
    paths = [str(source)] + [p for p in sys.path if p and Path(p).resolve() != ROOT]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


@contextlib.contextmanager
def worktree(ref: str):
    """A temporary git worktree of this checkout at `ref`, removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="thinker-ref-"))
    add = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tmp), ref],
                         capture_output=True, text=True)
    if add.returncode != 0:
        tmp.rmdir()
        fail(f"cannot check out {ref!r}: {(add.stderr.strip().splitlines() or ['git failed'])[-1]}")
    try:
        yield tmp
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp)], capture_output=True)


def commit_of(source: Path) -> str | None:
    """The checkout's short commit, with "+changes" when its tracked files differ from it; None where that
    cannot be told (no git on the machine, or a copy of the files without their history)."""
    try:
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True)
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return (head.stdout.strip() + ("+changes" if dirty else "")) or None
