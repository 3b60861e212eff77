"""Recover a trial's exact training configuration or its checkpoint, from Optuna (`STUDY:N`) or MLflow (a run id).

    thinker train addition --from-trial addition:17
    thinker train addition --from-trial 3f2a9c...  --tracking-uri sqlite:///mlflow.db
    thinker eval addition:17
"""

from __future__ import annotations

import re
from pathlib import Path

from thinker.sweeps.report import ReportError, open_study
from thinker.sweeps.stores import DEFAULT_STORAGE
from thinker.sweeps.tracking import download_checkpoint, resolve_tracking_uri, run_config
from thinker.sweeps.trial import TrialRecord

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
RUNTIME = ("device", "threads")  # runtime settings a rerun picks afresh rather than copying from the trial


def trial_config(ref: str, storage: str | None = None, tracking_uri: str | None = None) -> dict:
    """The flat TrainConfig dict of trial `STUDY:NUMBER` or MLflow run `RUN_ID`; ThinkerError if not found."""
    if RUN_ID.match(ref):
        config = run_config(resolve_tracking_uri(tracking_uri), ref)
    else:
        config = _record(ref, storage).config
        if not config:
            raise ReportError(f"trial {ref} recorded no configuration")
    return {k: v for k, v in config.items() if k not in RUNTIME}


def trial_checkpoint(ref: str, dest: str, storage: str | None = None, tracking_uri: str | None = None
                     ) -> tuple[Path, str]:
    """Download the model.pt of trial `STUDY:NUMBER` or MLflow run `RUN_ID` into `dest`; (path, run id)."""
    run_id = ref
    if not RUN_ID.match(ref):
        run_id = _record(ref, storage).mlflow_run_id
        if not run_id:
            raise ReportError(f"trial {ref} has no MLflow run")
    return download_checkpoint(resolve_tracking_uri(tracking_uri), run_id, dest), run_id


def is_trial_ref(ref: str) -> bool:
    """Whether `ref` reads as STUDY:NUMBER or an MLflow run id (rather than a path)."""
    study, sep, number = ref.rpartition(":")
    return bool(RUN_ID.match(ref)) or bool(sep and study and number.isdecimal())


def _record(ref: str, storage: str | None) -> TrialRecord:
    study_name, sep, number = ref.rpartition(":")
    if not sep or not number.isdecimal() or not study_name:
        raise ReportError(f"expected STUDY:NUMBER or an MLflow run id, got {ref!r}")
    study = open_study(study_name, storage or DEFAULT_STORAGE)
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == int(number)]
    if not trials:
        raise ReportError(f"study {study_name!r} has no trial {number}")
    return TrialRecord.from_trial(trials[0])

