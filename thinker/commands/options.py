"""Option types shared by several commands, defined once."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from thinker.device import DEVICES, DeviceError, pick_device
from thinker.errors import UsageError
from thinker.tasks import TASKS

Device = Annotated[str, typer.Option("--device", help=f"One of {', '.join(DEVICES)} (or cuda:N).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for weights, data and samplers.")]
Storage = Annotated[
    str | None,
    typer.Option("--storage", envvar="THINKER_STORAGE", show_envvar=True,
                 help="Optuna storage: an RDB URL (sqlite:///…, postgresql://…) or journal:PATH "
                      "[default: sqlite:///optuna.db]."),
]
TaskOptions = Annotated[
    list[str] | None,
    typer.Option("--option", "-o", help="Task option KEY=VALUE, repeatable (e.g. -o base=10)."),
]


def check_task(name: str) -> str:
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; choose from: {', '.join(TASKS)}")
    return name


def check_device(name: str):
    try:
        return pick_device(name)
    except DeviceError as e:
        raise UsageError(str(e)) from None


def parse_task_options(pairs: list[str] | None) -> dict:
    """`["base=10", "max_operand=99"]` -> {"base": 10, "max_operand": 99} (values parsed as JSON).

    >>> parse_task_options(["base=10", "long_length=12"])
    {'base': 10, 'long_length': 12}
    """
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"task option must be KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def check_writable_dir(path: Path) -> Path:
    """Fail early, writing nothing, if `path` cannot become a writable directory."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"output directory {str(path)!r} exists and is not a directory")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {str(path)!r} cannot be written")
    return path
