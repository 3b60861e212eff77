"""`thinker sweep TASK --trials N`: an Optuna study whose every trial is an MLflow run.

    thinker sweep addition --trials 50
    thinker sweep copy --trials 3 --max-samples 20000 --jobs 2
    thinker sweep addition --trials 50 --storage postgresql://thinker@db/optuna --tracking-uri http://mlflow:5000
"""

# No `from __future__ import annotations` here: Typer evaluates the option annotations inside
# register(), where the objective names are imported.
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from thinker.commands.options import Device, Seed, Storage, check_device, check_task
from thinker.errors import UsageError, guarded

SAMPLERS = ("tpe", "random", "gp", "cmaes")
PRUNERS = ("hyperband", "median", "none")


def check_choice(name: str, value: str, choices) -> str:
    if value not in choices:
        raise UsageError(f"unknown {name} {value!r}; choose from: {', '.join(choices)}")
    return value


def parse_gpus(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        gpus = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--gpus takes GPU indices like 0,1,2; got {text!r}") from None
    import torch  # noqa: PLC0415

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = [g for g in gpus if not 0 <= g < available]
    if missing:
        raise UsageError(f"--gpus {text}: no CUDA device {missing[0]} here ({available} available)")
    return gpus


def parse_faults(values: list[str] | None) -> dict[int, str]:
    """Hidden test option: `--inject-fault 1:error@4096` makes trial 1 raise after 4096 samples."""
    faults = {}
    for value in values or []:
        number, sep, fault = value.partition(":")
        if not sep or not number.isdigit():
            raise UsageError(f"--inject-fault takes TRIAL:KIND@SAMPLES, got {value!r}")
        faults[int(number)] = fault
    return faults


def register(app: typer.Typer) -> None:
    from sweeps.objective import OBJECTIVES  # noqa: PLC0415  (sweeps/ imports no optuna at module level)

    @app.command("sweep")
    @guarded
    def sweep_command(
        task: Annotated[str, typer.Argument(help="Task name (see `thinker tasks`).")],
        trials: Annotated[int, typer.Option(help="Target number of finished trials in the study.")] = 50,
        space: Annotated[Path | None, typer.Option(help="Search space TOML [default: the task's own].")] = None,
        sampler: Annotated[str, typer.Option(help=f"One of {', '.join(SAMPLERS)}.")] = "tpe",
        pruner: Annotated[str, typer.Option(help=f"One of {', '.join(PRUNERS)}.")] = "hyperband",
        objective: Annotated[str, typer.Option(help=f"One of {', '.join(OBJECTIVES)}.")] = "accuracy",
        storage: Storage = None,
        study: Annotated[str | None, typer.Option(help="Study name [default: the task].")] = None,
        tracking_uri: Annotated[str | None, typer.Option(
            help="MLflow tracking URI [default: MLFLOW_TRACKING_URI, else MLflow's default store].")] = None,
        experiment: Annotated[str | None, typer.Option(help="MLflow experiment [default: thinker-TASK].")] = None,
        max_samples: Annotated[int | None, typer.Option(help="Cap on each trial's samples.")] = None,
        timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
        jobs: Annotated[int, typer.Option(help="Worker processes on this machine (CPU threads are split).")] = 1,
        gpus: Annotated[str | None, typer.Option(help="GPU indices, one trial per GPU at a time, e.g. 0,1.")] = None,
        device: Device = "auto",
        seed: Seed = 0,
        inject_fault: Annotated[list[str] | None, typer.Option(hidden=True)] = None,
    ) -> None:
        """Search hyperparameters with Optuna; every trial is an MLflow run under one parent run."""
        from sweeps.objective import SweepSettings  # noqa: PLC0415
        from sweeps.space import SpaceError, load_space  # noqa: PLC0415
        from sweeps.storage import DEFAULT_STORAGE, StorageError, check_url  # noqa: PLC0415
        from sweeps.tracking import TrackingError, check_tracking, resolve_tracking_uri  # noqa: PLC0415

        check_task(task)
        for name, value in (("trials", trials), ("jobs", jobs)):
            if value < 1:
                raise UsageError(f"--{name} must be at least 1, got {value}")
        if max_samples is not None and max_samples < 1:
            raise UsageError(f"--max-samples must be positive, got {max_samples}")
        if timeout is not None and timeout <= 0:
            raise UsageError(f"--timeout must be positive, got {timeout}")
        check_choice("sampler", sampler, SAMPLERS)
        check_choice("pruner", pruner, PRUNERS)
        check_choice("objective", objective, OBJECTIVES)
        dev, _ = check_device(device)
        gpu_list = parse_gpus(gpus)
        try:
            loaded = load_space(space if space is not None else task)
            if loaded.task not in (None, task):
                raise UsageError(f"space file {loaded.source} is for task {loaded.task!r}, not {task!r}")
            storage = check_url(storage or DEFAULT_STORAGE)
            tracking = resolve_tracking_uri(tracking_uri)
            check_tracking(tracking)
        except (SpaceError, StorageError, TrackingError) as e:
            raise UsageError(str(e)) from None
        jobs = max(jobs, len(gpu_list)) if gpu_list and jobs == 1 else jobs
        threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 and not gpu_list else 0
        settings = SweepSettings(
            task=task, trials=trials, study=study or task, storage=storage, tracking_uri=tracking,
            experiment=experiment or f"thinker-{task}", space=str(space.resolve()) if space else task,
            sampler=sampler, pruner=pruner, objective=objective, max_samples=max_samples, timeout=timeout,
            device=str(dev) if not gpu_list else "cuda", gpus=gpu_list, jobs=jobs, seed=seed, threads=threads,
            faults=parse_faults(inject_fault))
        run(settings)

    # On another machine (or in a container), joining a running sweep reads better as `thinker worker`.
    app.command("worker", help="Join a sweep as one more worker: the same as `thinker sweep`, by another name.")(
        sweep_command)


def run(settings) -> None:
    from rich.console import Console  # noqa: PLC0415

    from sweeps.runner import SweepError, run_sweep  # noqa: PLC0415
    from sweeps.storage import StorageError  # noqa: PLC0415
    from sweeps.tracking import TrackingError  # noqa: PLC0415

    console = Console(stderr=True)
    try:
        outcome = run_sweep(settings, console)
    except (SweepError, StorageError, TrackingError) as e:
        raise UsageError(str(e)) from None
    s = outcome.summary
    if outcome.status == "already finished":
        console.print(f"study {s['study']!r} already has {s['finished']} finished trials "
                      f"(target {s['trials_target']}); raise --trials to add more")
    else:
        best = s.get("best_value")
        console.print(f"{outcome.status}: {s['finished']}/{s['trials_target']} trials finished "
                      f"({s['complete']} complete, {s['pruned']} pruned, {s['failed']} failed) in "
                      f"{s['sweep_seconds']:.0f}s; best value {best if best is not None else '-'}"
                      + (f" (trial {s['best_trial']})" if s.get("best_trial") is not None else ""))
    print(json.dumps({"status": outcome.status, **s}))
    if outcome.status == "interrupted":
        console.print("interrupted: rerun the same command to resume the study")
        raise typer.Exit(130)
