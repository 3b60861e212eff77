"""Option types and checks shared by several commands, defined once.

    >>> parse_task_options(["base=10", "long_length=12"])
    {'base': 10, 'long_length': 12}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from thinker.device import DEVICES
from thinker.errors import ThinkerError
from thinker.tasks import TASKS
from thinker.training import TrainConfig


class UsageError(ThinkerError):
    """Bad command-line input that no library checks (a malformed option value, say)."""


def given_path(text: str) -> Path:
    """A path option's value; an empty one is refused rather than read as "." (the current directory):
    `--out "$RUN_DIR"` with the variable unset would otherwise write into wherever the command ran.

    >>> given_path("runs/a")
    PosixPath('runs/a')
    """
    if not str(text).strip():
        raise typer.BadParameter("an empty path (an unset variable?)")
    return Path(text)


PATH = {"parser": given_path, "metavar": "PATH"}  # for every path option: typer.Option(..., **PATH)

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
# The model's shape, for every command that builds a model (None: the config's default)
Steps = Annotated[int | None, typer.Option(help="Recurrent thinking steps.")]
Latent = Annotated[int | None, typer.Option(help="Learned memory tokens.")]
DModel = Annotated[int | None, typer.Option(help="Model width.")]
NHeads = Annotated[int | None, typer.Option(help="Attention heads.")]
NLayers = Annotated[int | None, typer.Option(help="Blocks in the shared stack.")]
TrackingUri = Annotated[str | None, typer.Option(
    help="MLflow tracking URI [default: MLFLOW_TRACKING_URI, else MLflow's default store ./mlflow.db].")]


def check_task(name: str) -> str:
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; choose from: {', '.join(TASKS)}")
    return name


def check_choice(name: str, value: str, choices) -> str:
    if value not in choices:
        raise UsageError(f"unknown {name} {value!r}; choose from: {', '.join(choices)}")
    return value


def parse_task_options(pairs: list[str] | None) -> dict:
    """`["base=10", "max_operand=99"]` -> {"base": 10, "max_operand": 99} (values parsed as JSON)."""
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


def build_config(base: dict, overrides: dict) -> TrainConfig:
    """A TrainConfig from the task's defaults, a flat dict over them and the options given (None: not given)."""
    values = {**base, **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig.for_task(values.pop("task"), **values)
