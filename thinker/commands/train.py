"""`thinker train TASK`: train one model, save the best checkpoint, print a JSON summary last.

    thinker train addition --device cpu
    thinker train copy --max-samples 50000 --out runs/copy
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from thinker.commands.options import (
    Device,
    Seed,
    Storage,
    TaskOptions,
    check_device,
    check_task,
    check_writable_dir,
    parse_task_options,
)
from thinker.errors import UsageError, guarded
from thinker.progress import stderr, training_progress
from thinker.train import TrainConfig, TrainingDiverged, save_checkpoint, train

# CLI flag -> TrainConfig field, for the flags that map one to one
FLAGS = ("steps", "latent", "batch_size", "lr", "d_model", "n_heads", "n_layers", "max_samples",
         "max_seconds", "target", "precision")


def build_config(base: dict, overrides: dict) -> TrainConfig:
    values = {**base, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return TrainConfig.from_dict(values)
    except ValueError as e:
        raise UsageError(str(e)) from None


def register(app: typer.Typer) -> None:
    @app.command("train")
    @guarded
    def train_command(
        task: Annotated[str, typer.Argument(help="Task name (see `thinker tasks`).")],
        steps: Annotated[int | None, typer.Option(help="Recurrent thinking steps.")] = None,
        latent: Annotated[int | None, typer.Option(help="Learned memory tokens.")] = None,
        batch_size: Annotated[int | None, typer.Option(help="Samples per optimizer step.")] = None,
        lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
        d_model: Annotated[int | None, typer.Option(help="Model width.")] = None,
        n_heads: Annotated[int | None, typer.Option(help="Attention heads.")] = None,
        n_layers: Annotated[int | None, typer.Option(help="Blocks in the shared stack.")] = None,
        max_samples: Annotated[int | None, typer.Option(help="Sample budget.")] = None,
        max_seconds: Annotated[float | None, typer.Option(help="Time budget in seconds (0: none).")] = None,
        target: Annotated[float | None, typer.Option(help="Stop at this held-out exact match.")] = None,
        precision: Annotated[str | None, typer.Option(help="fp32, tf32 or bf16.")] = None,
        device: Device = "auto",
        seed: Seed = 0,
        option: TaskOptions = None,
        out: Annotated[Path | None, typer.Option(help="Output directory [default: runs/TASK-TIME].")] = None,
        from_trial: Annotated[str | None, typer.Option(
            help="Rerun a sweep trial's configuration: STUDY:NUMBER (with --storage) or an MLflow run id.")] = None,
        storage: Storage = None,
        tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI for --from-trial.")] = None,
    ) -> None:
        """Train one model and write its best checkpoint; the last stdout line is a JSON summary."""
        check_task(task)
        base: dict = {"task": task}
        if from_trial:
            from sweeps.rerun import trial_config  # noqa: PLC0415 - optuna/mlflow only when asked

            base = trial_config(from_trial, storage=storage, tracking_uri=tracking_uri)
            if base["task"] != task:
                raise UsageError(f"trial {from_trial} is a {base['task']!r} trial, not {task!r}")
        options = parse_task_options(option)
        if options:
            base["task_options"] = {**base.get("task_options", {}), **options}
        flags = {name: value for name, value in locals().items() if name in FLAGS}
        cfg = build_config(base, {**flags, "device": device, "seed": seed})
        try:
            from thinker.tasks import make_task

            make_task(cfg.task, **cfg.task_options)
        except ValueError as e:
            raise UsageError(str(e)) from None
        dev, reason = check_device(device)
        out = check_writable_dir(out or Path("runs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}")

        stderr.print(f"device: {dev} ({reason})")
        try:
            with training_progress(cfg.max_samples, task) as logger:
                result = train(cfg, logger)
        except TrainingDiverged as e:
            raise UsageError(f"training diverged: {e}") from None
        checkpoint = save_checkpoint(out, cfg, result)
        stderr.print(f"{task}: exact match {result.exact_match:.2%} after {result.samples:,} samples in "
                     f"{result.train_seconds:.1f}s; best checkpoint {checkpoint}")
        print(json.dumps({**result.summary(), "checkpoint": str(checkpoint)}))
