"""One base class for every error a user can fix; the CLI turns it into one line and exit code 2.

    >>> try:
    ...     raise ConfigError("steps must be positive, got 0")
    ... except ThinkerError as e:
    ...     print(f"thinker: error: {e}")
    thinker: error: steps must be positive, got 0

Library code (core, sweeps, bench) raises a subclass of `ThinkerError` and never knows about exit
codes or terminals; `thinker.cli` catches `ThinkerError` in one place.
"""

from __future__ import annotations


class ThinkerError(Exception):
    """Bad input, a missing device, an unreadable store: something the user can fix."""


class ConfigError(ThinkerError, ValueError):
    """A configuration value that cannot work (a ValueError too, for callers that expect one)."""


def one_line(error: BaseException, limit: int | None = None) -> str:
    """`Type: first line of the message`, cut to `limit` characters: how failures are recorded.

    >>> one_line(RuntimeError("boom\\nat line 3"))
    'RuntimeError: boom'
    """
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."
