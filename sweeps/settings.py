"""What every worker of a sweep needs, and the objectives a sweep can optimise.

    >>> OBJECTIVES["accuracy"]
    ('maximize',)
    >>> from thinker.sweeps.space import load_space
    >>> SweepSettings(task="copy", trials=3, study="copy", storage="sqlite:///optuna.db", space=load_space("copy"),
    ...               tracking_uri="sqlite:///mlflow.db", experiment="thinker-copy").directions
    ('maximize',)

Objectives: `accuracy` (best held-out exact match), `time-to-target` (samples until the target
exact match; a trial that never gets there scores its budget plus the share of problems it still
gets wrong), `length` (exact match on longer problems than trained, 2x the training length unless the
space sets `length_eval`, thinking in proportion to their length: the settings that generalise), and two
multi-objective modes whose best trials form a Pareto front: `pareto-samples`
(exact match vs samples) and `pareto-seconds` (exact match vs training seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from thinker.sweeps.space import Space

OBJECTIVES = {
    "accuracy": ("maximize",),
    "length": ("maximize",),
    "time-to-target": ("minimize",),
    "pareto-samples": ("maximize", "minimize"),
    "pareto-seconds": ("maximize", "minimize"),
}
EXACT_MATCH = ("accuracy", "length")  # single objectives whose pruner values are exact match itself (else 1 - it)
SAMPLERS = ("tpe", "random", "gp", "cmaes")  # built in `study`
PRUNERS = ("hyperband", "median", "none")


@dataclass
class SweepSettings:
    """Everything a worker process needs to run trials (picklable, so it crosses process starts)."""

    task: str
    trials: int
    study: str
    storage: str
    tracking_uri: str
    experiment: str
    space: Space  # parsed once, by the command; the worker processes get it with the rest
    sampler: str = "tpe"
    pruner: str = "hyperband"
    objective: str = "accuracy"
    max_samples: int | None = None
    timeout: float | None = None
    device: str = "auto"
    gpus: list[int] = field(default_factory=list)
    jobs: int = 1
    seed: int = 0
    threads: int = 0
    placement: str = ""  # why this many workers (shown, and tagged on the parent run)
    log_file: str | None = None  # where MLflow's, Optuna's and Python's own messages go (logs.py)
    verbose: bool = False  # also show them on stderr

    @property
    def directions(self) -> tuple[str, ...]:
        return OBJECTIVES[self.objective]

    @property
    def single_objective(self) -> bool:
        """One objective: prunable, with a best trial (two have a Pareto front instead)."""
        return len(self.directions) == 1
