"""Errors the user can fix: shown as one line, exit code 2.

    >>> @guarded
    ... def command():
    ...     raise UsageError("--trials must be positive, got 0")
"""

from __future__ import annotations

import functools
import sys

import typer


class UsageError(Exception):
    """Bad input: reported as `thinker: error: <message>` and exit code 2, never a traceback."""


def fail(message: str) -> typer.Exit:
    """Print one error line and return the exit to raise (so callers write `raise fail(...)`)."""
    print(f"thinker: error: {message}", file=sys.stderr)
    return typer.Exit(2)


def guarded(command):
    """Turn UsageError into one line on stderr and exit code 2 (Typer would print a traceback)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UsageError as e:
            raise fail(str(e)) from None

    return wrapper
