"""What one trial is, as the storage keeps it: `TrialRecord`, the typed form of its Optuna user attributes.

    >>> record = TrialRecord(worker="host:4242", budget=6144)
    >>> record.attrs()
    {'worker': 'host:4242', 'budget': 6144}
    >>> TrialRecord.from_trial(type("FrozenTrial", (), {"user_attrs": {"samples": 512}})()).samples
    512

The objective writes a trial's record as it runs (`to_storage`, `update`); the live view, the report,
the plots, the summary and reruns read it back (`from_trial`), from any process or machine. A field
not known yet is None and is not written: the record of a trial grows as it runs. Only this module
spells the attributes' names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

FINISHED = ("COMPLETE", "PRUNED")  # trial states that count towards --trials
INTERRUPTED = "interrupted"  # the fail_reason of a trial a stop (Ctrl-C, SIGTERM) ended
VERIFIED = "verified_trial:"  # a study attribute per trial scored on every problem at a sweep's end


@dataclass
class Live:
    """A running trial's progress, kept current while it trains: what the live view draws."""

    samples: int = 0
    exact_match: float | None = None  # held-out, at the last evaluation
    samples_per_s: float | None = None


@dataclass
class TrialRecord:
    worker: str | None = None  # "host:pid" of the process that runs it
    device: str | None = None
    parent_run_id: str | None = None  # the invocation's MLflow run: each invocation's view shows its own trials
    config: dict | None = None  # the TrainConfig it trains, as a dict: what a rerun trains
    budget: int | None = None  # its max_samples
    mlflow_run_id: str | None = None
    live: Live | None = None
    samples: int | None = None  # trained so far; at the end, in all
    exact_match: float | None = None  # best held-out exact match (on config's eval_size problems), once complete
    final: dict | None = None  # at the target: its final score (`final.Score` as a dict), the objective value
    train_seconds: float | None = None
    samples_to_target: int | None = None
    restarts: int | None = None
    fail_reason: str | None = None
    unsent_points: int | None = None  # metric points the tracking store never got, after every retry
    prune_reason: str | None = None

    @classmethod
    def from_trial(cls, trial) -> TrialRecord:
        """The record of a trial (an Optuna `FrozenTrial`, or anything with `user_attrs`)."""
        record = cls(**{f.name: trial.user_attrs.get(f.name) for f in fields(cls)})
        record.live = Live(**record.live) if record.live else None
        return record

    def attrs(self) -> dict:
        """The fields that are known, as user attributes (JSON: the storage keeps them so)."""
        known = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return {**known, "live": asdict(self.live)} if self.live else known

    def to_storage(self, trial) -> None:
        """Write the known fields to a running trial (an Optuna `Trial`)."""
        for key, value in self.attrs().items():
            trial.set_user_attr(key, value)

    def update(self, trial, **changes) -> None:
        """Change some fields and write only those (an unknown name is a TypeError)."""
        TrialRecord(**changes).to_storage(trial)
        for key, value in changes.items():
            setattr(self, key, value)

    @property
    def reason(self) -> str | None:
        """Why it failed or was pruned."""
        return self.fail_reason or self.prune_reason

    @property
    def interrupted(self) -> bool:
        return self.fail_reason == INTERRUPTED

    @property
    def eval_problems(self) -> int | None:
        """How many held-out problems `exact_match` was measured on."""
        return (self.config or {}).get("eval_size")


def set_verified(study, number: int, figures: dict) -> None:
    """Note on the study what scoring trial `number` on every problem found (a finished trial's own
    attributes cannot change)."""
    study.set_user_attr(f"{VERIFIED}{number}", figures)


def verified(study, number: int) -> dict | None:
    """What scoring trial `number` on every problem found, if it was: {problems, wrong, exact_match, ...}."""
    return study.user_attrs.get(f"{VERIFIED}{number}")
