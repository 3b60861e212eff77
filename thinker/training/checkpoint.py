"""Saving a finished run (model.pt, config.json, result.json) and loading it back to ask it things.

    >>> save_checkpoint("runs/copy", cfg, result)  # doctest: +SKIP
    PosixPath('runs/copy/model.pt')
    >>> loaded = load_checkpoint("runs/copy")  # doctest: +SKIP
    >>> loaded.model(loaded.task.sample(4, generator).inputs)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from thinker.errors import ThinkerError, one_line
from thinker.model import Thinker, ThinkerConfig
from thinker.tasks import Task, make_task
from thinker.training.config import TrainConfig
from thinker.training.loop import TrainResult

CHECKPOINT = "model.pt"


class CheckpointError(ThinkerError):
    """A checkpoint that is missing or cannot be read."""


def save_checkpoint(out, cfg: TrainConfig, result: TrainResult) -> Path:
    """Write model.pt (weights, model and training config, summary), config.json and result.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / CHECKPOINT
    torch.save({"model": result.state_dict, "model_config": result.model_config,
                "train_config": cfg.to_dict(), "result": result.summary()}, checkpoint)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    result_json = {**result.summary(), "history": result.history}
    (out / "result.json").write_text(json.dumps(result_json, indent=2) + "\n")
    return checkpoint


@dataclass
class Checkpoint:
    """A trained model with the task and configuration it was trained with."""

    path: Path
    model: Thinker
    task: Task
    config: TrainConfig
    result: dict


def checkpoint_path(source) -> Path:
    """A run directory (holding model.pt) or a model.pt itself; CheckpointError if there is none."""
    if not str(source).strip():  # Path("") is the current directory: an unset variable, not a choice
        raise CheckpointError("no run given (an empty name): pass a run directory, a model.pt, STUDY:NUMBER or "
                              "an MLflow run id")
    path = Path(source)
    if path.is_dir():
        path = path / CHECKPOINT
        if not path.is_file():
            raise CheckpointError(f"{source}: no {CHECKPOINT} in this directory (is it a finished run?)")
    elif not path.is_file():
        raise CheckpointError(f"{source}: no such run directory or checkpoint file")
    return path


def load_checkpoint(source, device: torch.device | str = "cpu") -> Checkpoint:
    """Load a run directory or model.pt: the model (in eval mode) on `device`, its task and config."""
    path = checkpoint_path(source)
    try:
        with warnings.catch_warnings():  # what torch says of a file that is no checkpoint: the error says it
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(data, dict):
            raise TypeError(f"it holds a {type(data).__name__}, not a dict")
        config = TrainConfig.from_dict(data["train_config"])
        task = make_task(config.task, **config.task_options)
        model = Thinker(ThinkerConfig(**data["model_config"])).to(device)
        model.load_state_dict(data["model"])
    except Exception as e:  # noqa: BLE001 - whatever a foreign file makes torch.load raise (IndexError, ...)
        raise CheckpointError(f"{source}: not a thinker checkpoint ({one_line(e, 120)})") from None
    return Checkpoint(path, model.eval(), task, config, data.get("result", {}))
