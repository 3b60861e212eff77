"""One trial: suggest a configuration, train it, report evaluations to Optuna and curves to MLflow.

    >>> trial_values("time-to-target", type("R", (), {"samples_to_target": None, "exact_match": 0.5})(), 1000)
    1500.0
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import time

import optuna
import torch

from thinker.device import configure_torch, device_lost, release_memory
from thinker.errors import one_line
from thinker.sweeps.interrupt import Interrupt, StopOnInterrupt
from thinker.sweeps.settings import SweepSettings
from thinker.sweeps.space import load_space
from thinker.sweeps.tracking import Tracker, config_json
from thinker.training import TrainingDiverged, save_checkpoint, train

LIVE_SECONDS = 3.0  # how often a running trial's progress is written to the storage between evaluations


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


def failure_reason(error: BaseException) -> str:
    """The one line recorded in Optuna and MLflow for a failed trial."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return "CUDA out of memory"
    if isinstance(error, TrainingDiverged):
        return f"diverged: {error}"
    return one_line(error)


def worker_id(pid: int) -> str:
    """How a trial names the process that runs it ("host:pid"): its `worker` attribute and MLflow tag."""
    return f"{socket.gethostname()}:{pid}"


class LiveProgress:
    """A trainer logger that passes metrics on and keeps the trial's `live` attribute current: samples,
    held-out exact match and samples/s, at every evaluation and every `LIVE_SECONDS` in between.
    The sweep's live view reads it from the storage, from any process or machine."""

    def __init__(self, inner, trial: optuna.Trial) -> None:
        self.inner, self.trial = inner, trial
        self.live: dict[str, float] = {}
        self.written = 0.0

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.inner.log(metrics, step)
        self.live["samples"] = step
        if "samples_per_s" in metrics:
            self.live["samples_per_s"] = metrics["samples_per_s"]
        evaluated = "eval_exact_match" in metrics
        if evaluated:
            self.live["exact_match"] = metrics["eval_exact_match"]
        if evaluated or time.monotonic() - self.written >= LIVE_SECONDS:
            self.trial.set_user_attr("live", dict(self.live))
            self.written = time.monotonic()

    def close(self) -> None:
        self.inner.close()


class Objective:
    """Callable for `study.optimize`; one instance per worker process."""

    def __init__(self, settings: SweepSettings, parent_run_id: str, interrupt: Interrupt, worker: int = 0) -> None:
        self.settings, self.parent_run_id, self.interrupt, self.worker = settings, parent_run_id, interrupt, worker
        self.space = load_space(settings.space)
        self.tracker = Tracker(settings.tracking_uri, settings.experiment)
        self.device = settings.device
        self.device_gone = False  # set when a trial left the device unusable in this process: the worker stops
        if settings.gpus:
            self.device = f"cuda:{settings.gpus[worker % len(settings.gpus)]}"

    def __call__(self, trial: optuna.Trial):
        s = self.settings
        suggested = self.space.suggest(trial)
        runtime = {"device": self.device, "seed": s.seed, "threads": s.threads}
        if s.max_samples:
            runtime["max_samples"] = s.max_samples
        try:
            cfg = self.space.config(s.task, suggested, **runtime)
        except ValueError as e:  # an impossible combination from a hand-written space
            trial.set_user_attr("fail_reason", f"invalid configuration: {e}")
            raise
        trial.set_user_attr("config", cfg.to_dict())
        worker = worker_id(os.getpid())
        trial.set_user_attr("worker", worker)
        tags = {"optuna.study": s.study, "thinker.config": config_json(cfg.to_dict()), "task": s.task,
                "worker": worker}
        run = self.tracker.start_trial(self.parent_run_id, trial.number, cfg.to_dict(), tags)
        trial.set_user_attr("mlflow_run_id", run.run_id)
        trial.set_user_attr("parent_run_id", self.parent_run_id)  # so each invocation shows its own trials
        trial.set_user_attr("budget", cfg.max_samples)
        trial.set_user_attr("device", self.device)
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
            if samples >= cfg.max_samples:
                return  # the budget is spent: pruning now would save nothing and throw the trial's result away
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at {samples} samples (exact match {metrics['exact_match']:.4f})")

        configure_torch(cfg.threads, cfg.precision)  # the top of this trial: its process-wide switches
        try:
            result = train(cfg, logger=StopOnInterrupt(LiveProgress(run, trial), self.interrupt), on_eval=on_eval)
        except optuna.TrialPruned as e:
            run.finish("PRUNED", str(e))
            trial.set_user_attr("prune_reason", str(e))
            raise
        except KeyboardInterrupt:
            self.interrupt.ignore_further()  # finish the bookkeeping even if Ctrl-C is pressed again
            run.finish("KILLED", "interrupted")
            trial.set_user_attr("fail_reason", "interrupted")
            raise
        except BaseException as e:
            reason, lost = failure_reason(e), device_lost(e)
            if lost:  # every later trial here would fail at once, each a failed run, up to the failure guard
                reason += "; the device is unusable in this process: its worker stops"
            trial.set_user_attr("fail_reason", reason)
            run.finish("FAIL", reason)
            if lost:
                self.device_gone = True
                trial.study.stop()
            else:
                release_memory()
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
            run.log_artifacts_from(tmp, "checkpoint")
        finals = {k: float(v) for k, v in result.summary().items()
                  if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
        run.finish("COMPLETE", metrics={f"final_{k}": v for k, v in finals.items()}, step=result.samples)
        return values
