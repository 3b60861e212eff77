"""Output paths checked before the work rather than after it: an hour of training must not end in
"permission denied".

    >>> check_writable_file(Path("/"), "--json")
    Traceback (most recent call last):
    thinker.outputs.OutputError: --json '/' is a directory
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from thinker.errors import ThinkerError


class OutputError(ThinkerError):
    """An output file or folder that cannot be written."""


def check_writable_dir(path: Path) -> Path:
    """Fail early, leaving nothing behind, if `path` cannot become a writable directory.

    It makes the missing directories, creates and removes a probe file in the last, then removes
    what it made. `os.access` would not do: it says yes to root almost everywhere, and tools like
    this run as root in containers.
    """
    if path.exists() and not path.is_dir():
        raise OutputError(f"output directory {str(path)!r} exists and is not a directory")
    made: list[Path] = []
    try:
        for folder in [*reversed(path.parents), path]:
            if not folder.exists():
                folder.mkdir()
                made.append(folder)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise OutputError(f"output directory {str(path)!r} cannot be written ({e.strerror or e})") from None
    finally:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
    return path


def ready_to_write(path: Path) -> Path:
    """`path`, with its folder made: the check before the work tried that folder and removed what it made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def check_writable_file(path: Path, option: str) -> Path:
    """Fail early if `path` is a directory or cannot be written; an existing file is left as it is."""
    if path.is_dir():
        raise OutputError(f"{option} {str(path)!r} is a directory")
    check_writable_dir(path.parent)
    if path.exists():
        try:
            with open(path, "r+b"):  # opens for writing without truncating
                pass
        except OSError as e:
            raise OutputError(f"{option} {str(path)!r} cannot be written ({e.strerror or e})") from None
    return path


def check_apart(outputs: dict[str, Path | None], inputs: dict[str, Path | None] | None = None) -> None:
    """Fail if an output is the very file an input is read from (a study's database, a checkpoint), or the
    file of another output: writing it would destroy what the command reads, or one output the other.

    >>> check_apart({"--plot": Path("optuna.db")}, {"the study's database": Path("./optuna.db")})
    Traceback (most recent call last):
    thinker.outputs.OutputError: --plot 'optuna.db' would overwrite the study's database
    """
    taken: dict[Path, str] = {}
    for name, path in (inputs or {}).items():
        if path is not None:
            taken[path.resolve()] = name
    for option, path in outputs.items():
        if path is None:
            continue
        key = path.resolve()
        if key in taken:
            raise OutputError(f"{option} {str(path)!r} would overwrite {taken[key]}")
        taken[key] = f"the {option} file"
