"""One trial: suggest a configuration, train it, report evaluations to Optuna and curves to MLflow.

    >>> trial_values("time-to-target", type("R", (), {"samples_to_target": None, "exact_match": 0.5})(), 1000)
    1500.0

A trial that reaches its target is scored once more, on many problems (`final.final_score`): that
score, tie-broken by the samples it took, is its `accuracy` value; the pruner still compares the
evaluations on the fixed grid.

Its record (`trial.TrialRecord`) is written as it goes: who runs it and what it trains at the start,
its progress while it trains, and how it ended.
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import time

import optuna
import torch

from thinker.device import configure_torch, device_lost, pick_device, release_memory
from thinker.errors import one_line
from thinker.model import Thinker, ThinkerConfig
from thinker.sweeps.final import Score, affordable_exhaustive, final_score, tie_broken
from thinker.sweeps.interrupt import Interrupt
from thinker.sweeps.settings import EXACT_MATCH, SweepSettings
from thinker.sweeps.tracking import Tracker, TrialRun
from thinker.sweeps.trial import INTERRUPTED, Live, TrialRecord
from thinker.tasks import make_task
from thinker.training import TrainConfig, TrainingDiverged, save_checkpoint, train

LIVE_SECONDS = 3.0  # how often a running trial's progress is written to the storage between evaluations


def trial_values(objective: str, result, max_samples: int, final: Score | None = None):
    """The value(s) Optuna records for a finished trial; `final`: its final score, if it reached the target."""
    exact_match = result.exact_match if final is None else final.exact_match
    if objective == "length":
        return result.length_exact_match
    if objective == "accuracy":
        if final is None:
            return result.exact_match
        samples = result.samples_to_target if result.samples_to_target is not None else result.samples
        return tie_broken(final, samples, max_samples)
    if objective == "time-to-target":
        if result.samples_to_target is not None:
            return float(result.samples_to_target)
        return max_samples * (2.0 - result.exact_match)
    cost = result.samples if objective == "pareto-samples" else result.train_seconds
    return exact_match, float(cost)


def score_at_target(cfg: TrainConfig, result, exhaustive: bool = False) -> Score:
    """A trial's final score: every problem where its device makes that affordable (or `exhaustive`), else
    the fixed held-out sample. A trial whose own exhaustive check passed is right on every problem already."""
    task = make_task(cfg.task, **cfg.task_options)
    if result.exhaustive:
        return Score(1.0, task.space_size(), 0, True)
    device, _ = pick_device(cfg.device)
    model = Thinker(ThinkerConfig(**result.model_config)).to(device)
    model.load_state_dict(result.state_dict)
    return final_score(model, task, exhaustive or affordable_exhaustive(task, device))


def unchecked(cfg: TrainConfig, result) -> bool:
    """A trial that asked for the exhaustive check, reached the held-out target and spent its budget without
    a check passing: the model it keeps (its best held-out state) is one no check has seen, so only a full
    pass says what it gets wrong (in one measured sweep such a model was right on every pair)."""
    return cfg.exhaustive_check and result.samples_to_target is None and result.exact_match >= cfg.target


def intermediate_value(objective: str, exact_match: float) -> float:
    """What pruners compare at each evaluation: better is larger for accuracy and length, smaller otherwise."""
    return exact_match if objective in EXACT_MATCH else 1.0 - exact_match


def watched(objective: str, metrics: dict[str, float]) -> float:
    """The evaluation figure a trial's pruning follows: exact match on the longer problems for `length`,
    on the held-out ones otherwise."""
    return metrics["length_exact_match"] if objective == "length" else metrics["exact_match"]


def for_objective(objective: str, cfg: TrainConfig) -> TrainConfig:
    """`cfg` as the objective needs it: `length` scores longer problems at every evaluation (twice the
    training length unless the space chose a `length_eval`, 512 of them unless it chose a size)."""
    if objective != "length":
        return cfg
    length = cfg.length_eval or 2 * make_task(cfg.task, **cfg.task_options).train_length
    return cfg.replace(length_eval=length, long_eval_size=cfg.long_eval_size or 512)


def failure_reason(error: BaseException) -> str:
    """The one line recorded in Optuna and MLflow for a failed trial."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return "CUDA out of memory"
    if isinstance(error, TrainingDiverged):
        return f"diverged: {error}"
    return one_line(error)


def worker_id(pid: int) -> str:
    """How a trial names the process that runs it ("host:pid"): its record's `worker` and its run's tag."""
    return f"{socket.gethostname()}:{pid}"


class TrialLogger:
    """The trainer's logger in a trial: raises KeyboardInterrupt at the first call after a stop (the trainer
    is between steps there), passes metrics to the trial's MLflow run, and keeps the record's `live` progress
    (samples, held-out exact match, samples/s) current in the storage, at every evaluation and every
    `LIVE_SECONDS` in between: the sweep's live view reads it from there, from any process or machine."""

    def __init__(self, run: TrialRun, trial: optuna.Trial, record: TrialRecord, interrupt: Interrupt) -> None:
        self.run, self.trial, self.record, self.interrupt = run, trial, record, interrupt
        self.live, self.written = Live(), 0.0

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.interrupt.check()
        self.run.log(metrics, step)
        self.live.samples = step
        self.live.samples_per_s = metrics.get("samples_per_s", self.live.samples_per_s)
        evaluated = "eval_exact_match" in metrics
        if evaluated:
            self.live.exact_match = metrics["eval_exact_match"]
        if evaluated or time.monotonic() - self.written >= LIVE_SECONDS:
            self.record.update(self.trial, live=self.live)
            self.written = time.monotonic()

    def close(self) -> None:
        self.run.close()


class Objective:
    """Callable for `study.optimize`; one instance per worker process."""

    def __init__(self, settings: SweepSettings, parent_run_id: str, interrupt: Interrupt, worker: int = 0) -> None:
        self.settings, self.parent_run_id, self.interrupt = settings, parent_run_id, interrupt
        self.tracker = Tracker(settings.tracking_uri, settings.experiment)
        self.device = f"cuda:{settings.gpus[worker % len(settings.gpus)]}" if settings.gpus else settings.device
        self.device_gone = False  # set when a trial left the device unusable in this process: the worker stops

    def __call__(self, trial: optuna.Trial):
        s = self.settings
        record = TrialRecord(worker=worker_id(os.getpid()), device=self.device, parent_run_id=self.parent_run_id)
        runtime = {"device": self.device, "seed": s.seed, "threads": s.threads}
        if s.max_samples:
            runtime["max_samples"] = s.max_samples
        try:
            cfg = for_objective(s.objective, s.space.config(s.task, s.space.suggest(trial), **runtime))
        except ValueError as e:  # an impossible combination from a hand-written space
            record.fail_reason = f"invalid configuration: {e}"
            record.to_storage(trial)
            raise
        record.config, record.budget = cfg.to_dict(), cfg.max_samples
        record.to_storage(trial)
        tags = {"optuna.study": s.study, "thinker.config": json.dumps(record.config, sort_keys=True), "task": s.task,
                "worker": record.worker}
        run = self.tracker.start_trial(self.parent_run_id, trial.number, record.config, tags)
        record.update(trial, mlflow_run_id=run.run_id)
        single = s.single_objective
        best = {"exact_match": 0.0, "samples": 0}

        def on_eval(samples: int, metrics: dict[str, float]) -> None:
            record.update(trial, samples=samples)
            # Pruners see the best exact match so far: what the trial would return if stopped here.
            best["exact_match"], best["samples"] = max(best["exact_match"], watched(s.objective, metrics)), samples
            if not single:  # Optuna cannot prune multi-objective studies
                return
            trial.report(intermediate_value(s.objective, best["exact_match"]), samples)
            if samples >= cfg.max_samples:
                return  # the budget is spent: pruning now would save nothing and throw the trial's result away
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at {samples} samples (exact match {metrics['exact_match']:.4f})")

        configure_torch(cfg.threads, cfg.precision)  # the top of this trial: its process-wide switches
        try:
            result = train(cfg, logger=TrialLogger(run, trial, record, self.interrupt), on_eval=on_eval)
        except optuna.TrialPruned as e:
            run.finish("PRUNED", str(e))
            record.update(trial, prune_reason=str(e), unsent_points=run.unsent or None)
            raise
        except KeyboardInterrupt:
            self.interrupt.ignore_further()  # finish the bookkeeping even if Ctrl-C is pressed again
            run.finish("KILLED", INTERRUPTED)
            record.update(trial, fail_reason=INTERRUPTED, unsent_points=run.unsent or None)
            raise
        except BaseException as e:
            reason, lost = failure_reason(e), device_lost(e)
            if lost:  # every later trial here would fail at once, each a failed run, up to the failure guard
                reason += "; the device is unusable in this process: its worker stops"
            record.update(trial, fail_reason=reason)
            run.finish("FAIL", reason)
            if run.unsent:
                record.update(trial, unsent_points=run.unsent)
            if lost:
                self.device_gone = True
                trial.study.stop()
            else:
                release_memory()
            raise
        if single and result.stop_reason == "target":
            # It stopped because it got there: it holds that exact match at every later rung too.
            # Without these points the pruner would compare later trials only with slower ones.
            value = intermediate_value(s.objective, best["exact_match"])
            for step in range(best["samples"] // cfg.eval_every * cfg.eval_every + cfg.eval_every,
                              cfg.max_samples + 1, cfg.eval_every):
                trial.report(value, step)
                trial.should_prune()  # records the rungs it passes; it is finished, so never pruned
        # at the target: held-out exact match reached it (and, where asked, the exhaustive check passed)
        # (the length objective ranks longer problems: no final score)
        whole = unchecked(cfg, result)
        scored = s.objective != "length" and (result.samples_to_target is not None or whole)
        final = score_at_target(cfg, result, whole) if scored else None
        record.update(trial, exact_match=result.exact_match, samples=result.samples,
                      train_seconds=result.train_seconds, samples_to_target=result.samples_to_target,
                      restarts=result.restarts, **({"final": final.to_dict()} if final else {}))
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(tmp, cfg, result)
            run.log_artifacts_from(tmp, "checkpoint")
        finals = {k: float(v) for k, v in result.summary().items()
                  if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
        metrics = {f"final_{k}": v for k, v in {**finals, "eval_problems": cfg.eval_size}.items()}
        if final is not None:
            low, high = final.interval() or (final.exact_match, final.exact_match)
            metrics.update(scored_exact_match=final.exact_match, scored_problems=final.problems,
                           scored_wrong=final.wrong, scored_low=low, scored_high=high,
                           scored_exhaustive=float(final.exhaustive), scored_seconds=final.seconds)
        run.finish("COMPLETE", metrics=metrics, step=result.samples)
        if run.unsent:
            record.update(trial, unsent_points=run.unsent)
        return trial_values(s.objective, result, cfg.max_samples, final)
