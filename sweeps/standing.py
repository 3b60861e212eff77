"""Where a running sweep stands, read from the storage: what a live view and an ETA need.

    now = standing("addition", storage, parent_run_id, single_objective=True)
    now.finished, now.running[0].samples, eta_seconds(now, target=50, workers=2)

Every worker writes its trial's progress into its record in the storage (`objective.TrialLogger`), so any
process can watch any worker, on this machine or another; an invocation shows the trials of its
own parent run.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime

import optuna

from thinker.sweeps.trial import FINISHED, Live, TrialRecord


@dataclass
class Running:
    number: int
    params: dict
    samples: int
    budget: int
    exact_match: float | None
    samples_per_s: float | None
    device: str
    seconds: float


@dataclass
class Ended:
    number: int
    state: str  # COMPLETE, PRUNED, FAIL
    value: float | None
    seconds: float
    reason: str | None
    own: bool  # ran under this invocation's parent run


@dataclass
class Standing:
    finished: int
    best: tuple[float, int] | None  # (value, trial number)
    running: list[Running] = field(default_factory=list)
    ended: list[Ended] = field(default_factory=list)


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None:
        return 0.0
    return ((end or datetime.now()) - start).total_seconds()


def standing(study_name: str, storage, parent_run_id: str | None, single_objective: bool) -> Standing:
    """Finished count, best so far, this invocation's running trials and every ended trial."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    best = None
    if single_objective and any(t.state.name == "COMPLETE" for t in trials):
        best = (study.best_value, study.best_trial.number)
    now = Standing(finished=sum(t.state.name in FINISHED for t in trials), best=best)
    for t in trials:
        record = TrialRecord.from_trial(t)
        own = parent_run_id is None or record.parent_run_id == parent_run_id
        if t.state.name == "RUNNING" and own:
            live = record.live or Live()
            now.running.append(Running(
                number=t.number, params=dict(t.params), samples=live.samples, budget=record.budget or 0,
                exact_match=live.exact_match, samples_per_s=live.samples_per_s, device=record.device or "?",
                seconds=_seconds(t.datetime_start, None)))
        elif t.state.name in (*FINISHED, "FAIL"):
            now.ended.append(Ended(
                number=t.number, state=t.state.name, value=t.value if t.values and len(t.values) == 1 else None,
                seconds=_seconds(t.datetime_start, t.datetime_complete), reason=record.reason, own=own))
    return now


def expected_finished(now: Standing, target: int) -> int:
    """How many finished trials the study will hold when this sweep ends: `target`, or more when
    trials still running as it is reached finish too (they run to their end rather than being lost)."""
    return max(target, now.finished + len(now.running))


def eta_seconds(now: Standing, target: int, workers: int) -> float | None:
    """Seconds until `target` trials have finished: the trials still to start at the mean duration of
    finished ones (complete and pruned counted apart, in their observed shares), plus what the running
    ones have left, shared by `workers`. None until a trial of this invocation has finished."""
    own = [e for e in now.ended if e.own and e.state in FINISHED]
    if not own:
        return None
    complete = [e.seconds for e in own if e.state == "COMPLETE"]
    pruned = [e.seconds for e in own if e.state == "PRUNED"]
    share = len(pruned) / len(own)
    per_trial = share * (statistics.mean(pruned) if pruned else 0.0) + \
        (1 - share) * (statistics.mean(complete) if complete else 0.0)
    to_start = max(0, target - now.finished - len(now.running))
    left = sum(max(0.0, per_trial - r.seconds) for r in now.running)
    return (to_start * per_trial + left) / max(1, workers)
