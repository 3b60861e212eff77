"""Saving a finished run: model.pt (weights, configs, summary), config.json and result.json.

    >>> save_checkpoint("runs/copy", cfg, result)  # doctest: +SKIP
    PosixPath('runs/copy/model.pt')
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from thinker.training.config import TrainConfig
from thinker.training.loop import TrainResult


def save_checkpoint(out, cfg: TrainConfig, result: TrainResult) -> Path:
    """Write model.pt (weights, model and training config, summary), config.json and result.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "model.pt"
    torch.save({"model": result.state_dict, "model_config": result.model_config,
                "train_config": cfg.to_dict(), "result": result.summary()}, checkpoint)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    result_json = {**result.summary(), "history": result.history}
    (out / "result.json").write_text(json.dumps(result_json, indent=2) + "\n")
    return checkpoint
