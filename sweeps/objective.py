"""One trial: suggest a configuration, train it, report evaluations to Optuna and curves to MLflow.

    >>> OBJECTIVES["accuracy"]
    ('maximize',)

Objectives: `accuracy` (best held-out exact match), `time-to-target` (samples until the target
exact match; a trial that never gets there scores its budget plus the share of problems it still
gets wrong), and two multi-objective modes whose best trials form a Pareto front: `pareto-samples`
(exact match vs samples) and `pareto-seconds` (exact match vs training seconds).
"""

from __future__ import annotations

import gc
import math
import os
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass, field

import torch

from sweeps.space import load_space
from sweeps.tracking import Tracker, config_json
from thinker.train import TrainingDiverged, save_checkpoint, train

# Set by the first Ctrl-C; the trial's next log call raises KeyboardInterrupt from there. Raising in
# the signal handler itself can land inside a finalizer, where Python prints "Exception ignored" with a
# traceback and carries on training. A second Ctrl-C raises at once.
INTERRUPTED = threading.Event()

OBJECTIVES = {
    "accuracy": ("maximize",),
    "time-to-target": ("minimize",),
    "pareto-samples": ("maximize", "minimize"),
    "pareto-seconds": ("maximize", "minimize"),
}


@dataclass
class SweepSettings:
    """Everything a worker process needs to run trials (picklable, so it crosses process starts)."""

    task: str
    trials: int
    study: str
    storage: str
    tracking_uri: str
    experiment: str
    space: str  # a task name (the shipped space) or a path to a space file
    sampler: str = "tpe"
    pruner: str = "hyperband"
    objective: str = "accuracy"
    max_samples: int | None = None
    timeout: float | None = None
    device: str = "auto"
    gpus: list[int] = field(default_factory=list)
    jobs: int = 1
    seed: int = 0
    threads: int = 0
    faults: dict[int, str] = field(default_factory=dict)  # trial number -> TrainConfig.fault (tests)

    @property
    def directions(self) -> tuple[str, ...]:
        return OBJECTIVES[self.objective]

    def to_dict(self) -> dict:
        return asdict(self)


def trial_values(objective: str, result, max_samples: int):
    """The value(s) Optuna records for a finished trial."""
    if objective == "accuracy":
        return result.exact_match
    if objective == "time-to-target":
        if result.samples_to_target is not None:
            return float(result.samples_to_target)
        return max_samples * (2.0 - result.exact_match)
    cost = result.samples if objective == "pareto-samples" else result.train_seconds
    return result.exact_match, float(cost)


def intermediate_value(objective: str, exact_match: float) -> float:
    """What pruners compare at each evaluation: better is larger for accuracy, smaller otherwise."""
    return exact_match if objective == "accuracy" else 1.0 - exact_match


class Objective:
    """Callable for `study.optimize`; one instance per worker process."""

    def __init__(self, settings: SweepSettings, parent_run_id: str, worker: int = 0) -> None:
        self.settings = settings
        self.parent_run_id = parent_run_id
        self.worker = worker
        self.space = load_space(settings.space)
        self.tracker = Tracker(settings.tracking_uri, settings.experiment)
        self.device = settings.device
        if settings.gpus:
            self.device = f"cuda:{settings.gpus[worker % len(settings.gpus)]}"

    def __call__(self, trial):
        import optuna  # noqa: PLC0415

        s = self.settings
        suggested = self.space.suggest(trial)
        runtime = {"device": self.device, "seed": s.seed, "threads": s.threads,
                   "fault": s.faults.get(trial.number, "")}
        if s.max_samples:
            runtime["max_samples"] = s.max_samples
        try:
            cfg = self.space.config(s.task, suggested, **runtime)
        except ValueError as e:  # an impossible combination from a hand-written space
            trial.set_user_attr("fail_reason", f"invalid configuration: {e}")
            raise
        trial.set_user_attr("config", cfg.to_dict())
        worker = f"{socket.gethostname()}:{os.getpid()}"
        trial.set_user_attr("worker", worker)
        tags = {"optuna.study": s.study, "thinker.config": config_json(cfg.to_dict()), "task": s.task,
                "worker": worker}
        run = self.tracker.start_trial(self.parent_run_id, trial.number, cfg.to_dict(), tags)
        trial.set_user_attr("mlflow_run_id", run.run_id)
        multi = len(s.directions) > 1
        best = {"exact_match": 0.0, "step": 0}

        def on_eval(samples: int, metrics: dict[str, float]) -> None:
            trial.set_user_attr("samples", samples)
            # Pruners see the best exact match so far: what the trial would return if stopped here.
            best["exact_match"] = max(best["exact_match"], metrics["exact_match"])
            best["step"] = samples
            if multi:  # Optuna cannot prune multi-objective studies
                return
            trial.report(intermediate_value(s.objective, best["exact_match"]), samples)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at {samples} samples (exact match {metrics['exact_match']:.4f})")

        try:
            result = train(cfg, logger=InterruptibleLogger(run), on_eval=on_eval)
        except optuna.TrialPruned as e:
            run.finish("PRUNED", str(e))
            trial.set_user_attr("prune_reason", str(e))
            raise
        except KeyboardInterrupt:
            _ignore_further_interrupts()  # finish the bookkeeping even if Ctrl-C is pressed again
            run.finish("KILLED", "interrupted")
            trial.set_user_attr("fail_reason", "interrupted")
            raise
        except BaseException as e:
            reason = _failure_reason(e)
            _release_memory()
            trial.set_user_attr("fail_reason", reason)
            run.finish("FAIL", reason)
            raise
        values = trial_values(s.objective, result, cfg.max_samples)
        if not multi and result.stop_reason == "target":
            # It stopped because it got there: it holds that exact match at every later rung too.
            # Without these points the pruner would compare later trials only with slower ones.
            value = intermediate_value(s.objective, best["exact_match"])
            for step in range(best["step"] // cfg.eval_every * cfg.eval_every + cfg.eval_every,
                              cfg.max_samples + 1, cfg.eval_every):
                trial.report(value, step)
                trial.should_prune()  # records the rungs it passes; it is finished, so never pruned
        for key in ("exact_match", "samples", "train_seconds", "samples_to_target", "restarts"):
            trial.set_user_attr(key, getattr(result, key))
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(tmp, cfg, result)
            run.client.log_artifacts(run.run_id, tmp, "checkpoint")
        finals = {k: float(v) for k, v in result.summary().items()
                  if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
        run.finish("COMPLETE", metrics={f"final_{k}": v for k, v in finals.items()}, step=result.samples)
        return values


class InterruptibleLogger:
    """Passes metrics on, and raises KeyboardInterrupt at the first call after a Ctrl-C."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def log(self, metrics: dict[str, float], step: int) -> None:
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt
        self.inner.log(metrics, step)

    def close(self) -> None:
        self.inner.close()


def on_sigint(signum, frame) -> None:
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt
    INTERRUPTED.set()
    print("thinker: stopping the running trial (Ctrl-C again to stop at once)", file=sys.stderr)


def install_interrupt_handler():
    """Route Ctrl-C through `on_sigint`; returns the handler to restore (None when nothing changed)."""
    INTERRUPTED.clear()
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:  # started in the background: leave it as the shell wanted
        return None
    signal.signal(signal.SIGINT, on_sigint)
    return previous


def restore_interrupt_handler(previous) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, previous)


def _failure_reason(error: BaseException) -> str:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return "CUDA out of memory"
    if isinstance(error, TrainingDiverged):
        return f"diverged: {error}"
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _ignore_further_interrupts() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
