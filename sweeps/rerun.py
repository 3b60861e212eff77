"""Recover a trial's exact training configuration, from Optuna (`STUDY:N`) or MLflow (a run id).

    thinker train addition --from-trial addition:17
    thinker train addition --from-trial 3f2a9c...  --tracking-uri sqlite:///mlflow.db
"""

from __future__ import annotations

import re

from thinker.sweeps.report import ReportError, open_study
from thinker.sweeps.storage import DEFAULT_STORAGE
from thinker.sweeps.tracking import resolve_tracking_uri, run_config

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
# Runtime settings a rerun picks afresh rather than copying from the trial ("fault": a test-only
# setting that studies made by earlier versions recorded).
RUNTIME = ("device", "threads", "fault")


def trial_config(ref: str, storage: str | None = None, tracking_uri: str | None = None) -> dict:
    """The flat TrainConfig dict of trial `STUDY:NUMBER` or MLflow run `RUN_ID`; ThinkerError if not found."""
    if RUN_ID.match(ref):
        config = run_config(resolve_tracking_uri(tracking_uri), ref)
    else:
        study_name, sep, number = ref.rpartition(":")
        if not sep or not number.isdigit() or not study_name:
            raise ReportError(f"--from-trial takes STUDY:NUMBER or an MLflow run id, got {ref!r}")
        config = _from_study(study_name, int(number), storage or DEFAULT_STORAGE)
    return {k: v for k, v in config.items() if k not in RUNTIME}


def _from_study(name: str, number: int, storage: str) -> dict:
    study = open_study(name, storage)
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not trials:
        raise ReportError(f"study {name!r} has no trial {number}")
    config = trials[0].user_attrs.get("config")
    if not config:
        raise ReportError(f"trial {number} of study {name!r} recorded no configuration")
    return config

