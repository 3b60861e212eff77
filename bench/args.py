"""Command lines of the benchmark scripts (`python -m thinker.bench.learning`, `.thinking`, `.sweep`).

    >>> BenchParser(prog="learning").parse_args(["--seeds"])
    Traceback (most recent call last):
    SystemExit: 2

Bad input is one line on stderr and exit code 2 (`bench: error: ...`), as the `thinker` commands say
it, rather than argparse's usage block followed by the error.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import NoReturn

from thinker.device import DeviceError, pick_device
from thinker.outputs import OutputError, check_writable_file


def fail(message: str) -> NoReturn:
    """Bad input: one line on stderr and exit code 2."""
    print(f"bench: error: {message}", file=sys.stderr)
    raise SystemExit(2)


class BenchParser(argparse.ArgumentParser):
    """argparse with one-line errors (`--help` still prints the usage)."""

    def error(self, message: str) -> NoReturn:
        fail(message)


def writable(path: str | None, option: str) -> str | None:
    """`path` (None: not given) once it is known to be writable, before the work rather than after it."""
    if path:
        try:
            check_writable_file(Path(path), option)
        except OutputError as e:
            fail(str(e))
    return path


def positive_int(text: str) -> int:
    """argparse type: a whole number above zero."""
    if not text.strip().isdecimal() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0, got {text!r}")
    return int(text)


def count(text: str) -> int:
    """argparse type: a whole number, zero or more."""
    if not text.strip().isdecimal():
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}")
    return int(text)


def seconds(text: str) -> float:
    """argparse type: a finite number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def device(text: str) -> str:
    """argparse type: a device this machine has (auto, cpu, cuda, cuda:N), kept as given."""
    try:
        pick_device(text)
    except DeviceError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text
