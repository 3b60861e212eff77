"""`thinker sweep TASK --trials N` (and `thinker worker`): an Optuna study whose every trial is an MLflow run.

    thinker sweep addition --trials 50
    thinker sweep copy --trials 3 --max-samples 20000 --jobs 2
    thinker sweep addition --trials 50 --storage postgresql://thinker@db/optuna --tracking-uri http://mlflow:5000
"""

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from thinker.cli.options import (
    PATH,
    Device,
    Seed,
    Storage,
    TrackingUri,
    UsageError,
    check_choice,
    check_task,
)
from thinker.cli.progress import stderr
from thinker.cli.sweep_view import Forecast, watch_trials
from thinker.device import pick_device
from thinker.outputs import check_writable_dir
from thinker.parsing import int_list
from thinker.sweeps.settings import OBJECTIVES, PRUNERS, SAMPLERS, SweepSettings


def parse_gpus(text: str | None) -> list[int]:
    if not text:
        return []
    gpus = int_list(text, "--gpus", minimum=0, example="0,1")
    import torch  # noqa: PLC0415

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = [g for g in gpus if not 0 <= g < available]
    if missing:
        raise UsageError(f"--gpus {text}: no CUDA device {missing[0]} here ({available} available)")
    return gpus


def sweep_command(
    task: Annotated[str, typer.Argument(help="Task name (see `thinker tasks`).")],
    trials: Annotated[int, typer.Option(min=1, help="Target number of finished trials in the study.")] = 50,
    space: Annotated[Path | None, typer.Option(
        help="Search space TOML [default: the task's own; addition with --objective length: addition-length].",
        **PATH)] = None,
    sampler: Annotated[str, typer.Option(help=f"One of {', '.join(SAMPLERS)}.")] = "tpe",
    pruner: Annotated[str, typer.Option(help=f"One of {', '.join(PRUNERS)}.")] = "hyperband",
    objective: Annotated[str, typer.Option(help=f"One of {', '.join(OBJECTIVES)}.")] = "accuracy",
    storage: Storage = None,
    study: Annotated[str | None, typer.Option(help="Study name [default: the task].")] = None,
    tracking_uri: TrackingUri = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment [default: thinker-TASK].")] = None,
    max_samples: Annotated[int | None, typer.Option(min=1, help="Cap on each trial's samples.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
    trials_per_device: Annotated[str, typer.Option(
        help="Trial processes per device: a number, or auto (CPU: one single-threaded trial per core; CUDA: "
             "as many per GPU as its CPU cores and free memory allow, up to 16).")] = "auto",
    jobs: Annotated[int | None, typer.Option(
        min=1, help="Exactly this many worker processes on this machine, CPU threads split between them "
                    "(instead of --trials-per-device).")] = None,
    gpus: Annotated[str | None, typer.Option(help="GPU indices to use, e.g. 0,1 [default: the --device one].")] = None,
    device: Device = "auto",
    seed: Seed = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also show MLflow's and Optuna's own messages.")]
    = False,
) -> None:
    """Search hyperparameters with Optuna; every trial is an MLflow run under one parent run."""
    from thinker.sweeps.connections import check_plan  # noqa: PLC0415 - Optuna and MLflow from here on
    from thinker.sweeps.coordinator import run_sweep  # noqa: PLC0415
    from thinker.sweeps.logs import route_library_logs  # noqa: PLC0415
    from thinker.sweeps.space import load_space, shipped_for  # noqa: PLC0415
    from thinker.sweeps.stores import (  # noqa: PLC0415
        DEFAULT_STORAGE,
        check_tracking,
        check_url,
        redact,
        resolve_tracking_uri,
        same_database,
    )

    check_task(task)
    if timeout is not None and timeout <= 0:  # Typer's ranges cannot exclude their end
        raise UsageError(f"--timeout must be positive, got {timeout}")
    check_choice("sampler", sampler, SAMPLERS)
    check_choice("pruner", pruner, PRUNERS)
    check_choice("objective", objective, OBJECTIVES)
    dev, _ = pick_device(device)
    gpu_list = parse_gpus(gpus)
    loaded = load_space(space.resolve() if space is not None else shipped_for(task, objective))
    if loaded.task not in (None, task):
        raise UsageError(f"space file {loaded.source} is for task {loaded.task!r}, not {task!r}")
    storage = check_url(storage or DEFAULT_STORAGE)
    tracking = resolve_tracking_uri(tracking_uri)
    if same_database(storage, tracking):
        raise UsageError(f"--storage and --tracking-uri name one database ({redact(storage)}): Optuna and MLflow "
                         "each need their own (PostgreSQL: CREATE DATABASE mlflow)")
    check_tracking(tracking)
    placement = place_workers(dev, gpu_list, trials_per_device, jobs)
    connections = check_plan(storage, placement.workers, redact(storage))  # before any worker starts
    if connections:
        stderr.print(connections)
    log_file = check_writable_dir(Path("runs") / f"sweep-{study or task}-{time.strftime('%Y%m%d-%H%M%S')}") \
        / "sweep.log"
    settings = SweepSettings(
        task=task, trials=trials, study=study or task, storage=storage, tracking_uri=tracking,
        experiment=experiment or f"thinker-{task}", space=loaded,
        sampler=sampler, pruner=pruner, objective=objective, max_samples=max_samples, timeout=timeout,
        device=str(dev), gpus=placement.gpus, jobs=placement.workers, seed=seed, threads=placement.threads,
        placement=placement.reason, log_file=str(log_file), verbose=verbose)
    route_library_logs(log_file, verbose, started=False)  # the file appears once the sweep has started
    forecast = Forecast()
    outcome = run_sweep(settings, watch=lambda started: watch_trials(started, log_file, forecast))
    s = outcome.summary
    if outcome.status == "already finished":
        stderr.print(f"study {s['study']!r} already has {s['finished']} finished trials "
                     f"(target {s['trials_target']}); raise --trials to add more")
    else:
        best = s.get("best_value")
        stderr.print(f"{outcome.status}: {finished_count(s['finished'], s['trials_target'])} in "
                     f"{s['sweep_seconds']:.0f}s: {s['complete']} complete, {s['pruned']} pruned, {failed(s)}; "
                     f"best value {best if best is not None else '-'}"
                     + (f" (trial {s['best_trial']})" if s.get("best_trial") is not None else ""))
    for line in best_lines(s):
        stderr.print(line)
    if forecast.summary():
        stderr.print(forecast.summary())
    if s.get("parent_run_id"):
        for line in where_next(settings, s):
            stderr.print(line)
    print(json.dumps({"status": outcome.status, **s}))
    if outcome.status == "interrupted":
        stderr.print("interrupted: rerun the same command to resume the study")
        raise typer.Exit(130)
    if outcome.status == "stopped" and s["stop_reason"] != "timeout":  # the workers gave up, or one died
        stderr.print(f"stopped: {s['stop_reason']}; the last failure: {s.get('last_failure') or '-'}")
        raise typer.Exit(1)


def best_lines(summary: dict) -> list[str]:
    """The best trial's exact match with the problems behind it, and what scoring it on every problem found.

    >>> for line in best_lines({"best_trial": 44, "best_scored": "0.99952 on 100,481 held-out problems",
    ...                         "best_verdict": "wrong on 408 of 1,002,001 pairs: see `thinker eval addition:44`"}):
    ...     print(line)
      trial 44: exact match 0.99952 on 100,481 held-out problems
      on every problem: wrong on 408 of 1,002,001 pairs: see `thinker eval addition:44`
    """
    if summary.get("best_trial") is None or not summary.get("best_scored"):
        return []
    lines = [f"  trial {summary['best_trial']}: exact match {summary['best_scored']}"]
    if summary.get("best_verdict"):
        lines.append(f"  on every problem: {summary['best_verdict']}")
    return lines


def finished_count(finished: int, target: int) -> str:
    """'3/4 trials finished', or past the target (the trials running when it was reached ran to their end):

    >>> finished_count(5, 4)
    '5 trials finished (4 asked for, 1 more running then)'
    """
    if finished <= target:
        return f"{finished}/{target} trials finished"
    return f"{finished} trials finished ({target} asked for, {finished - target} more running then)"


def failed(summary: dict) -> str:
    """'3 failed', or '3 failed (2 of them interrupted)': a trial stopped by Ctrl-C is recorded as failed."""
    cut = summary.get("interrupted") or 0
    return f"{summary['failed']} failed" + (f" ({cut} of them interrupted)" if cut else "")


def place_workers(device, gpus: list[int], per_device: str, jobs: int | None):
    """--jobs as given, else --trials-per-device on each GPU (or on the CPU)."""
    from thinker.machine import usable_cpus  # noqa: PLC0415
    from thinker.sweeps.workers import Placement, check_host_memory, plan_workers  # noqa: PLC0415
    from thinker.training.memory import available_bytes  # noqa: PLC0415

    available = available_bytes() / 2**30
    if device.type == "cuda" and not gpus:
        gpus = [device.index if device.index is not None else 0]
    if jobs is not None:
        check_host_memory(jobs, available, f"--jobs {jobs}")
        threads = max(1, usable_cpus() // jobs) if jobs > 1 and not gpus else 0
        return Placement(jobs, threads, gpus, f"--jobs {jobs}")
    free_gib = None
    if gpus:
        import torch  # noqa: PLC0415

        free_gib = [torch.cuda.mem_get_info(g)[0] / 2**30 for g in gpus]
    placement = plan_workers(device.type, gpus, per_device, usable_cpus(), free_gib)
    check_host_memory(placement.workers, available, f"--trials-per-device {per_device}")
    return placement


def where_next(settings, summary: dict) -> list[str]:
    """The commands and the link that open what this sweep produced."""
    from thinker.sweeps.stores import DEFAULT_STORAGE, redact  # noqa: PLC0415

    uri, experiment, parent = settings.tracking_uri, summary.get("experiment_id"), summary["parent_run_id"]
    page = f"#/experiments/{experiment}/runs/{parent}?workflowType=machine_learning"
    where = [] if settings.tracking_uri.startswith("http") else [f"  mlflow ui --backend-store-uri {uri}"]
    base = uri.rstrip("/") if uri.startswith("http") else "http://127.0.0.1:5000"
    study = f" --study {settings.study}" if settings.study != settings.task else ""
    storage = f" --storage {redact(settings.storage)}" if settings.storage != DEFAULT_STORAGE else ""
    where += [f"  {redact(base)}/{page}", f"  thinker report {settings.task}{study}{storage}"]
    if summary.get("best_trial") is not None:
        where.append(f"  thinker train {settings.task} --from-trial {settings.study}:{summary['best_trial']}{storage}"
                     "   # rerun the best trial")
    return ["next:", *where]
