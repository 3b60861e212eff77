"""What `thinker eval` and `thinker predict` read: a run directory, a model.pt, `STUDY:TRIAL` or an MLflow run id.

    thinker eval runs/addition-20261129-101500
    thinker eval runs/addition-20261129-101500/model.pt
    thinker eval addition:17 --storage sqlite:///optuna.db
    thinker eval 3f2a9c0d4b1e4f6a8c7d5e3b2a1f0e9d --tracking-uri sqlite:///mlflow.db
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from thinker.device import pick_device
from thinker.training import Checkpoint, load_checkpoint
from thinker.training.checkpoint import checkpoint_path


@dataclass
class Source:
    checkpoint: Checkpoint
    label: str  # what the user named
    run_id: str | None  # the MLflow run the checkpoint came from, if any


def open_source(ref: str, device: str = "cpu", storage: str | None = None, tracking_uri: str | None = None
                ) -> Source:
    """Load the checkpoint `ref` names: a local path first, else a sweep trial (Optuna or MLflow)."""
    dev, _ = pick_device(device)
    if Path(ref).exists():
        return Source(load_checkpoint(ref, dev), ref, None)
    from thinker.sweeps.rerun import is_trial_ref, trial_checkpoint  # noqa: PLC0415 - Optuna/MLflow only if asked

    if not is_trial_ref(ref):
        checkpoint_path(ref)  # raises the one-line "no such run directory or checkpoint file"
    with tempfile.TemporaryDirectory(prefix="thinker-checkpoint-") as tmp:
        path, run_id = trial_checkpoint(ref, tmp, storage=storage, tracking_uri=tracking_uri)
        return Source(load_checkpoint(path, dev), ref, run_id)
