"""Trials and MLflow runs left RUNNING by a worker or an invocation that died: fail them, end them as KILLED.

    fail_trials_of(study, "host:4242", "worker-1 died (signal 9, SIGKILL)")  # a worker process known to be dead
    close_dead_trial_runs(study, tracker)             # trials failed (by heartbeat or a stop) with runs still open
    close_abandoned_parents(study, settings, tracker, own_parent_id)
"""

from __future__ import annotations

import copy

import optuna
from optuna.trial import TrialState

from thinker.sweeps.settings import SweepSettings
from thinker.sweeps.study import count, states
from thinker.sweeps.tracking import Tracker


def fail_trials_of(study: optuna.Study, worker: str, reason: str, retry: bool = True) -> int:
    """Fail the trials still RUNNING under `worker` ("host:pid", a process known to be dead) with `reason`, and
    `retry` them with the same parameters: what the heartbeat does, without waiting out its grace period."""
    storage, failed = study._storage, []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") != worker:
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                failed.append(trial._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:  # it ended after all
            pass
    callback = getattr(storage, "get_heartbeat_stale_trial_callback", None)  # storages with heartbeats
    again = callback() if callback and retry else None
    for trial_id in failed if again else []:
        trial = copy.deepcopy(storage.get_trial(trial_id))
        trial.user_attrs.pop("fail_reason")  # the retry inherits the user attributes, not the failure
        again(study, trial)
    return len(failed)


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


PARENT_ATTR = "mlflow_parent_run:"  # one study attribute per invocation's parent run


def record_parent(study: optuna.Study, run_id: str) -> None:
    """Note an invocation's parent run on the study, in an attribute of its own: invocations that start
    together would lose each other's ids in a shared list (read, append, write)."""
    study.set_user_attr(PARENT_ATTR + run_id, True)


def parent_runs(study: optuna.Study) -> list[str]:
    """Every invocation's parent run (studies written before per-run attributes kept one list)."""
    attrs = study.user_attrs
    return [*attrs.get("mlflow_parent_runs", []),
            *(key.removeprefix(PARENT_ATTR) for key in attrs if key.startswith(PARENT_ATTR))]


def close_abandoned_parents(study: optuna.Study, settings: SweepSettings, tracker: Tracker, own: str) -> int:
    """Once the study is done and nothing runs, parent runs still RUNNING belong to dead invocations."""
    if count(study) < settings.trials or count(study, ("RUNNING", "WAITING")):
        return 0  # other workers may still be at it
    closed = 0
    for run_id in parent_runs(study):
        if run_id != own and tracker.status(run_id) == "RUNNING":
            tracker.end(run_id, "KILLED", {"status": "abandoned: its process died"})
            closed += 1
    return closed
