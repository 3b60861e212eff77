"""Values from outside checked once: comma-separated integers on a command line (`--steps 1,2,4`,
`--batch-sizes 64,256`, `--seeds 0,1`), and a setting against its declared type (`check_type`).

    >>> int_list("1, 2,4", "--steps", minimum=1)
    [1, 2, 4]
    >>> int_list("64,lots", "--batch-sizes")
    Traceback (most recent call last):
    thinker.errors.ConfigError: --batch-sizes takes integers like 1,2,4; got '64,lots'
    >>> int_list("4,0", "--steps", minimum=1)
    Traceback (most recent call last):
    thinker.errors.ConfigError: --steps must be at least 1, got 0
    >>> check_type("lr", "0.1", "float")
    Traceback (most recent call last):
    thinker.errors.ConfigError: lr must be a finite number, got '0.1'
"""

from __future__ import annotations

import math

from thinker.errors import ConfigError

WORDS = {"bool": "true or false", "int": "an integer", "float": "a finite number", "str": "a string",
         "dict": "a table of options"}


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


def check_type(name: str, value, annotation) -> None:
    """ConfigError unless `value` fits `annotation` (the text of a field's or parameter's type: "int",
    "float", "bool", "str", "dict", or a union of them with "None"). An integer passes for a float, a bool
    for neither, and a float must be finite; a type named otherwise is left to its owner's own checks.
    Settings come from JSON, TOML and search spaces, where "0.1" for a rate or "yes" for a switch is
    easily written: caught here, it is one line instead of a failure deep inside training."""
    kinds = [kind.strip() for kind in str(annotation).split("|")]
    if any(kind not in WORDS and kind != "None" for kind in kinds):
        return
    if value is None and "None" in kinds:
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    fits = {"bool": isinstance(value, bool), "int": isinstance(value, int) and not isinstance(value, bool),
            "float": number and math.isfinite(value), "str": isinstance(value, str), "dict": isinstance(value, dict)}
    if not any(fits.get(kind, False) for kind in kinds):
        wanted = " or ".join(WORDS[kind] for kind in kinds if kind in WORDS)
        raise ConfigError(f"{name} must be {wanted}, got {value!r}")
