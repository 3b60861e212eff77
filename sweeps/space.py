"""Search spaces as data: one TOML file per task in `sweeps/spaces/`, or any file via `--space`.

    >>> space = load_space("addition")
    >>> sorted(space.params)[:3]
    ['batch_size', 'clip_norm', 'd_model']

A space file has four tables:

    task = "addition"                       # optional; must match the swept task if given
    [budget]                                # per-trial budget (TrainConfig fields)
    max_samples = 150000
    target = 0.999
    [fixed]                                 # TrainConfig fields every trial shares
    n_heads = 4
    [params]                                # what the sampler chooses
    lr = { type = "float", low = 1e-4, high = 3e-2, log = true }
    steps = { type = "int", low = 1, high = 4 }
    batch_size = { type = "categorical", choices = [32, 64, 128] }
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from thinker.errors import ThinkerError
from thinker.tasks import make_task
from thinker.training import TrainConfig

TYPES = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"},
         "categorical": {"choices"}}
TABLES = {"task", "description", "budget", "fixed", "params"}
BUDGET_KEYS = {"max_samples", "max_seconds", "target", "eval_every"}
# Fields a sweep sets itself, per trial or per invocation: never in a space file.
RESERVED = {"task", "device", "seed", "threads"}
CONFIG_FIELDS = set(TrainConfig().to_dict())


class SpaceError(ThinkerError):
    """A space file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial):
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1),
                                     log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


@dataclass
class Space:
    source: str
    task: str | None
    budget: dict = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)
    params: dict[str, Param] = field(default_factory=dict)

    def suggest(self, trial) -> dict:
        """The sampler's choice for every parameter, by name."""
        return {name: param.suggest(trial) for name, param in self.params.items()}

    def config(self, task: str, suggested: dict, **runtime) -> TrainConfig:
        """One trial's TrainConfig: the task's defaults, fixed values, budget, the suggestion, then runtime."""
        return TrainConfig.for_task(task, **{**self.fixed, **self.budget, **suggested, **runtime})

    def rungs(self, task: str, max_samples: int | None = None) -> tuple[int, int]:
        """(eval_every, max_samples) of every trial: where a pruner's rungs sit (`max_samples`: --max-samples)."""
        defaults = TrainConfig.for_task(task)
        eval_every = self.budget.get("eval_every", self.fixed.get("eval_every", defaults.eval_every))
        return eval_every, max_samples or self.budget.get("max_samples", defaults.max_samples)


def shipped_for(task: str, objective: str) -> str:
    """The shipped space a sweep of `task` uses without --space: `TASK-OBJECTIVE` where one ships (addition's
    `length` space searches what generalises to longer operands), else the task's own."""
    return f"{task}-{objective}" if default_space_path(f"{task}-{objective}") else task


def default_space_path(task: str) -> Path | None:
    path = resources.files("thinker.sweeps") / "spaces" / f"{task}.toml"
    return Path(str(path)) if path.is_file() else None


def load_space(task_or_path: str | Path) -> Space:
    """Load a shipped space by task name, or a space file by path; SpaceError if unusable."""
    path = Path(task_or_path)
    if not path.suffix and path.name == str(task_or_path):  # a task name; a path has a folder (the CLI resolves)
        shipped = default_space_path(str(task_or_path))
        if shipped is None:
            raise SpaceError(f"no search space shipped for task {str(task_or_path)!r}; pass --space FILE")
        path = shipped
    source = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpaceError(f"space file {source}: not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError(f"space file {source}: cannot be read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise SpaceError(f"space file {source}: not valid TOML ({e})") from None
    return parse_space(data, source)


def parse_space(data: dict, source: str = "<space>") -> Space:
    def bad(message: str) -> SpaceError:
        return SpaceError(f"space file {source}: {message}")

    unknown = sorted(set(data) - TABLES)
    if unknown:
        raise bad(f"unknown key(s) {', '.join(unknown)} (expected {', '.join(sorted(TABLES))})")
    for table in ("budget", "fixed", "params"):
        if not isinstance(data.get(table, {}), dict):
            raise bad(f"[{table}] must be a table")
    budget, fixed, raw_params = data.get("budget", {}), data.get("fixed", {}), data.get("params", {})
    for key in budget:
        if key not in BUDGET_KEYS:
            raise bad(f"unknown key budget.{key} (expected {', '.join(sorted(BUDGET_KEYS))})")
    for table, keys in (("fixed", fixed), ("params", raw_params)):
        for key in keys:
            if key in RESERVED:
                raise bad(f"{table}.{key} is set by the sweep itself, not by a space file")
            if key not in CONFIG_FIELDS:
                raise bad(f"unknown key {table}.{key}: not a training setting")
    if not raw_params:
        raise bad("[params] is empty: nothing to search")
    params = {name: _parse_param(name, spec, bad) for name, spec in raw_params.items()}
    space = Space(source=source, task=data.get("task"), budget=budget, fixed=fixed, params=params)
    low = _corner(params, "low")
    middles = [{**low, name: choice} for name, p in params.items() if p.type == "categorical"
               for choice in p.choices[1:-1]]
    try:  # every fixed value, both ends of every range and every choice must make a valid config and task
        for corner in (low, _corner(params, "high"), *middles):
            cfg = space.config(space.task or "copy", corner)
            make_task(cfg.task, **cfg.task_options)
    except ValueError as e:
        raise bad(str(e)) from None
    return space


def _parse_param(name: str, spec, bad) -> Param:
    if not isinstance(spec, dict):
        raise bad(f"params.{name} must be a table like {{ type = \"float\", low = 0.1, high = 1 }}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise bad(f"params.{name}: unknown type {kind!r} (expected {', '.join(TYPES)})")
    extra = sorted(set(spec) - TYPES[kind] - {"type"})
    if extra:
        raise bad(f"params.{name}: unknown key(s) {', '.join(extra)} for type {kind}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise bad(f"params.{name}: choices must be a non-empty list")
        return Param(name, kind, choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise bad(f"params.{name}: {kind} needs low and high")
    low, high = spec["low"], spec["high"]
    for value in (low, high):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad(f"params.{name}: low and high must be numbers")
        if kind == "int" and not float(value).is_integer():
            raise bad(f"params.{name}: an int range needs whole numbers, got {value}")
    if low > high:
        raise bad(f"params.{name}: low ({low}) > high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise bad(f"params.{name}: log must be true or false")
    if log and low <= 0:
        raise bad(f"params.{name}: a log scale needs low > 0")
    step = spec.get("step")
    if step is not None and (log or isinstance(step, bool) or not isinstance(step, int | float) or step <= 0):
        raise bad(f"params.{name}: step must be a positive number and cannot be combined with log")
    if step is not None and kind == "int" and not float(step).is_integer():
        raise bad(f"params.{name}: an int range needs a whole step, got {step}")
    return Param(name, kind, low=low, high=high, log=log, step=step)


def _corner(params: dict[str, Param], end: str) -> dict:
    values = {}
    for name, p in params.items():
        if p.type == "categorical":
            values[name] = p.choices[0] if end == "low" else p.choices[-1]
        else:
            values[name] = int(getattr(p, end)) if p.type == "int" else float(getattr(p, end))  # as suggested
    return values
