"""`thinker train TASK`: train one model, save the best checkpoint, print a JSON summary last.

    thinker train addition --device cpu
    thinker train copy --max-samples 50000 --out runs/copy

Data path: options -> `TrainConfig` (thinker.training.config) -> `train()` (thinker.training.loop,
which runs `TrainStep`) -> the progress bar as its logger -> checkpoint and JSON line.
"""

import json
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from thinker.cli.curves import draw_curves
from thinker.cli.options import (
    PATH,
    Device,
    DModel,
    Latent,
    NHeads,
    NLayers,
    Seed,
    Steps,
    Storage,
    TaskOptions,
    TrackingUri,
    UsageError,
    build_config,
    check_task,
    parse_task_options,
)
from thinker.cli.progress import stderr, training_progress
from thinker.device import configure_torch, pick_device
from thinker.errors import one_line
from thinker.outputs import check_writable_dir
from thinker.tasks import make_task
from thinker.training import save_checkpoint, train
from thinker.training.checkpoint import CHECKPOINT
from thinker.training.memory import check_fits


def train_command(
    task: Annotated[str, typer.Argument(help="Task name (see `thinker tasks`).")],
    steps: Steps = None,
    latent: Latent = None,
    batch_size: Annotated[int | None, typer.Option(help="Samples per optimizer step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    d_model: DModel = None,
    n_heads: NHeads = None,
    n_layers: NLayers = None,
    min_steps: Annotated[int | None, typer.Option(
        help="Think a random number of steps per batch, min-steps..steps (0: always --steps).")] = None,
    window: Annotated[int | None, typer.Option(
        help="Local attention: tokens see only tokens this many positions away (0: all).")] = None,
    max_positions: Annotated[int | None, typer.Option(
        help="Positions the model has (0: the task's longest segment); trained with --position-jitter.")] = None,
    position_jitter: Annotated[bool | None, typer.Option(
        "--position-jitter/--no-position-jitter",
        help="Shift each sample's positions by a random offset in training [default: off].")] = None,
    absolute_positions: Annotated[bool | None, typer.Option(
        "--absolute-positions/--no-absolute-positions",
        help="Add a learned embedding of each token's position; off: positions only as differences "
             "[default: on].")] = None,
    length_eval: Annotated[int | None, typer.Option(
        help="Score longer problems of this length (digits of each operand, or symbols) at every evaluation, "
             "thinking in proportion (0: one more than trained, at the trained steps).")] = None,
    max_samples: Annotated[int | None, typer.Option(help="Sample budget.")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Time budget in seconds (0: none).")] = None,
    target: Annotated[float | None, typer.Option(help="Stop at this held-out exact match.")] = None,
    exhaustive_check: Annotated[bool | None, typer.Option(
        "--exhaustive-check/--no-exhaustive-check",
        help="At the target, also score every problem and train on unless all are right [default: per task; "
             "on for addition].")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32, tf32 or bf16.")] = None,
    cuda_graph: Annotated[bool | None, typer.Option(
        "--cuda-graph/--no-cuda-graph",
        help="On CUDA, replay each step as captured CUDA graphs after a few eager ones [default: on].")] = None,
    device: Device = "auto",
    seed: Seed = 0,
    option: TaskOptions = None,
    out: Annotated[Path | None, typer.Option(help="Output directory [default: runs/TASK-TIME].", **PATH)] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Train into an --out folder that already holds a trained model, replacing it.")] = False,
    from_trial: Annotated[str | None, typer.Option(
        help="Rerun a sweep trial's configuration: STUDY:NUMBER (with --storage) or an MLflow run id.")] = None,
    storage: Storage = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Train one model and write its best checkpoint; the last stdout line is a JSON summary.
    Ctrl-C after the first evaluation stops training and still writes the best checkpoint (exit 130)."""
    check_task(task)
    base: dict = {"task": task}
    if from_trial:
        from thinker.sweeps.rerun import trial_config  # noqa: PLC0415 - Optuna and MLflow only when asked for

        base = trial_config(from_trial, storage=storage, tracking_uri=tracking_uri)
        if base["task"] != task:
            raise UsageError(f"trial {from_trial} is a {base['task']!r} trial, not {task!r}")
    options = parse_task_options(option)
    if options:
        base["task_options"] = {**base.get("task_options", {}), **options}
    cfg = build_config(base, dict(  # each option to its TrainConfig field; None: the task's or the config's default
        steps=steps, latent=latent, min_steps=min_steps, window=window, max_positions=max_positions,
        position_jitter=position_jitter, absolute_positions=absolute_positions, length_eval=length_eval,
        batch_size=batch_size, lr=lr, d_model=d_model, n_heads=n_heads,
        n_layers=n_layers,
        max_samples=max_samples, max_seconds=max_seconds, target=target, exhaustive_check=exhaustive_check,
        precision=precision, cuda_graph=cuda_graph, device=device, seed=seed))
    make_task(cfg.task, **cfg.task_options)  # a bad task option fails here, before anything is written
    dev, reason = pick_device(device)
    check_fits(cfg, dev)  # before a word is printed (the trainer checks again as it builds the step)
    if out is not None and (out / CHECKPOINT).exists() and not overwrite:
        raise UsageError(f"--out {str(out)!r} already holds a trained model ({CHECKPOINT}); choose another folder "
                         f"or pass --overwrite")
    out = check_writable_dir(out or fresh_run_dir(task))

    configure_torch(cfg.threads, cfg.precision)
    stderr.print(f"device: {dev} ({reason})")
    with training_progress(cfg.max_samples, task) as logger:
        result = train(cfg, logger, stop_on_interrupt=True)  # Ctrl-C after an evaluation keeps the best model
    try:
        checkpoint = save_checkpoint(out, cfg, result)
    except OSError as e:  # the directory went away or filled up during training: keep the model anyway
        rescue = Path(tempfile.mkdtemp(prefix=f"thinker-{task}-"))
        checkpoint = save_checkpoint(rescue, cfg, result)
        stderr.print(f"thinker: error: cannot write {out} ({e.strerror or e}); the trained model is saved in "
                     f"{rescue} instead")
        print(json.dumps({**result.summary(), "checkpoint": str(checkpoint), "wanted_out": str(out)}))
        raise typer.Exit(1) from None
    if result.history:  # the picture is an extra: a failure to draw it costs the run nothing
        try:
            draw_curves(out / "curves.png", result, cfg.target)
        except (OSError, ValueError) as e:
            stderr.print(f"thinker: warning: curves.png not written ({one_line(e)})")
    checked = {True: "; right on every problem (exhaustive check)",
               False: f"; the last of {result.exhaustive_checks} exhaustive checks found a wrong problem",
               None: ""}[result.exhaustive]
    if dev.type == "cuda":
        how = "replayed as CUDA graphs" if result.cuda_graph else "eager (--no-cuda-graph)" if not cfg.cuda_graph \
            else "eager (no CUDA graphs: see the warning above)"
        stderr.print(f"training steps: {how}")
    stderr.print(f"{task}: held-out exact match {result.exact_match:.2%} after {result.samples:,} samples in "
                 f"{result.train_seconds:.1f}s{checked}; best checkpoint {checkpoint}")
    print(json.dumps({**result.summary(), "checkpoint": str(checkpoint)}))
    if result.stop_reason == "interrupted":
        stderr.print("interrupted: the best model so far is saved")
        raise typer.Exit(130)


def fresh_run_dir(task: str) -> Path:
    """runs/TASK-TIME, with -2, -3, ... when a run started in the same second already took it."""
    base = Path("runs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path
