"""MLflow runs left RUNNING by a worker or an invocation that died: find them and end them as KILLED.

    close_dead_trial_runs(study, tracker)             # trials failed (by heartbeat or a stop) with runs still open
    close_abandoned_parents(study, settings, tracker, own_parent_id)
"""

from __future__ import annotations

import optuna

from thinker.sweeps.settings import SweepSettings
from thinker.sweeps.study import count, states
from thinker.sweeps.tracking import Tracker


def close_dead_trial_runs(study: optuna.Study, tracker: Tracker) -> int:
    """Runs still RUNNING whose trial has failed (a worker that died) are ended as KILLED."""
    closed = 0
    for trial in study.get_trials(deepcopy=False, states=states(("FAIL",))):
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id and tracker.status(run_id) == "RUNNING":
            tracker.end(run_id, "KILLED", {"state": "FAIL",
                                           "fail_reason": trial.user_attrs.get("fail_reason", "worker died")})
            closed += 1
    return closed


def close_abandoned_parents(study: optuna.Study, settings: SweepSettings, tracker: Tracker, own: str) -> int:
    """Once the study is done and nothing runs, parent runs still RUNNING belong to dead invocations."""
    if count(study) < settings.trials or count(study, ("RUNNING", "WAITING")):
        return 0  # other workers may still be at it
    closed = 0
    for run_id in study.user_attrs.get("mlflow_parent_runs", []):
        if run_id != own and tracker.status(run_id) == "RUNNING":
            tracker.end(run_id, "KILLED", {"status": "abandoned: its process died"})
            closed += 1
    return closed
