"""Recover a trial's exact training configuration, from Optuna (`STUDY:N`) or MLflow (a run id).

    thinker train addition --from-trial addition:17
    thinker train addition --from-trial 3f2a9c...  --tracking-uri sqlite:///mlflow.db
"""

from __future__ import annotations

import json
import re

from sweeps.report import ReportError, open_study
from sweeps.storage import DEFAULT_STORAGE, StorageError
from sweeps.tracking import TrackingError, resolve_tracking_uri
from thinker.errors import UsageError

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
# Runtime settings a rerun picks afresh rather than copying from the trial.
RUNTIME = ("device", "threads", "fault")


def trial_config(ref: str, storage: str | None = None, tracking_uri: str | None = None) -> dict:
    """The TrainConfig dict of trial `STUDY:NUMBER` or MLflow run `RUN_ID`; UsageError if not found."""
    try:
        if RUN_ID.match(ref):
            config = _from_run(ref, resolve_tracking_uri(tracking_uri))
        else:
            study_name, sep, number = ref.rpartition(":")
            if not sep or not number.isdigit() or not study_name:
                raise UsageError(f"--from-trial takes STUDY:NUMBER or an MLflow run id, got {ref!r}")
            config = _from_study(study_name, int(number), storage or DEFAULT_STORAGE)
    except (ReportError, StorageError, TrackingError) as e:
        raise UsageError(str(e)) from None
    return {k: v for k, v in config.items() if k not in RUNTIME}


def _from_study(name: str, number: int, storage: str) -> dict:
    study = open_study(name, storage)
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not trials:
        raise UsageError(f"study {name!r} has no trial {number}")
    config = trials[0].user_attrs.get("config")
    if not config:
        raise UsageError(f"trial {number} of study {name!r} recorded no configuration")
    return config


def _from_run(run_id: str, tracking_uri: str) -> dict:
    from mlflow.exceptions import MlflowException  # noqa: PLC0415
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    try:
        run = MlflowClient(tracking_uri).get_run(run_id)
    except MlflowException:
        raise UsageError(f"no MLflow run {run_id} in {tracking_uri}") from None
    text = run.data.tags.get("thinker.config")
    if not text:
        raise UsageError(f"MLflow run {run_id} is not a thinker trial (no thinker.config tag)")
    return json.loads(text)
