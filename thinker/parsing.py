"""Comma-separated integers on a command line (`--steps 1,2,4`, `--batch-sizes 64,256`, `--seeds 0,1`).

    >>> int_list("1, 2,4", "--steps", minimum=1)
    [1, 2, 4]
    >>> int_list("64,lots", "--batch-sizes")
    Traceback (most recent call last):
    thinker.errors.ConfigError: --batch-sizes takes integers like 1,2,4; got '64,lots'
    >>> int_list("4,0", "--steps", minimum=1)
    Traceback (most recent call last):
    thinker.errors.ConfigError: --steps must be at least 1, got 0
"""

from __future__ import annotations

from thinker.errors import ConfigError


def int_list(text: str, flag: str, minimum: int | None = None, example: str = "1,2,4") -> list[int]:
    """The integers in `text`, in order; a part that is not one, or is below `minimum`, is a ConfigError."""
    values = []
    for part in text.split(","):
        try:
            values.append(int(part))
        except ValueError:
            raise ConfigError(f"{flag} takes integers like {example}; got {text!r}") from None
        if minimum is not None and values[-1] < minimum:
            raise ConfigError(f"{flag} must be at least {minimum}, got {values[-1]}")
    return values
