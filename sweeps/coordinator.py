"""One invocation of a sweep: its study, its workers, and its parent MLflow run from start to end.

    >>> outcome = run_sweep(settings)  # doctest: +SKIP

`--trials N` is the study's target of finished (complete or pruned) trials, counted across every
invocation and worker, so rerunning a command resumes it and raising N adds trials. Workers talk
to the storage and the tracking store directly; both were initialised here first, so they never
race to create tables.

Every invocation that runs trials has a parent run (`ParentRun`), the parent of its trials' runs:
started once the study is ready, tagged with the sweep's settings and noted on the study; given the
summary, the plots and the best trial's checkpoint at the end; and ended however the sweep ends
(FINISHED, KILLED by a stop, FAILED by an error), never left RUNNING. Runs that the processes which
died left RUNNING are ended here too, as KILLED: a dead worker's trial run, a dead invocation's parent.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna

from thinker.device import pick_device
from thinker.errors import one_line
from thinker.exam import EXHAUSTIVE_LIMIT
from thinker.machine import usable_cpus
from thinker.sweeps.final import Score, final_score, verdict
from thinker.sweeps.interrupt import Interrupt
from thinker.sweeps.plots import render_plots
from thinker.sweeps.report import summarize
from thinker.sweeps.rerun import trial_checkpoint
from thinker.sweeps.settings import SweepSettings
from thinker.sweeps.stores import redact
from thinker.sweeps.study import count, create_study, open_storage, states
from thinker.sweeps.tracking import Tracker
from thinker.sweeps.trial import TrialRecord, set_verified, verified
from thinker.sweeps.workers import run_processes, run_worker
from thinker.training import load_checkpoint

PARENT_ATTR = "mlflow_parent_run:"  # one study attribute per invocation's parent run
SUMMARY_METRICS = ("finished", "complete", "pruned", "failed", "interrupted", "samples_total", "sweep_seconds",
                   "best_value", "unsent_points", "best_exact_match", "best_problems", "best_wrong", "best_low",
                   "best_high", "best_verified_problems", "best_verified_wrong")


@dataclass
class Outcome:
    status: str  # "finished", "already finished", "interrupted", "stopped"
    summary: dict


@dataclass
class Started:
    """What a watcher (the CLI's progress display) is told once the sweep has started."""

    settings: SweepSettings
    finished_before: int
    parent_run_id: str


Watch = Callable[[Started], contextlib.AbstractContextManager]


def run_sweep(settings: SweepSettings, watch: Watch | None = None) -> Outcome:
    """Create or resume the study and run it to `settings.trials` finished trials (or a stop).

    A first Ctrl-C or SIGTERM stops the running trials at their next log call and the sweep wraps up
    (summary, plots, parent run KILLED). A second one, or an error, cuts the wrap-up short: the
    parent run and any trial run left open are still ended, and an interrupted sweep still returns
    the summary it has.
    """
    with Interrupt() as interrupt:
        storage = open_storage(settings.storage)
        tracker = Tracker(settings.tracking_uri, settings.experiment)  # before the study: no empty study left
        study = create_study(settings, storage)
        done = count(study)
        if done >= settings.trials:
            return Outcome("already finished", summarize(study, settings, None, 0.0))
        close_dead_trial_runs(study, tracker)
        parent = ParentRun(tracker, settings, study)
        started = time.perf_counter()
        try:
            status, gave_up = "finished", None
            try:
                interrupt.check()  # stopped while the study was being set up: start no trial
                with watch(Started(settings, done, parent.run_id)) if watch else contextlib.nullcontext():
                    gave_up = (run_worker if settings.jobs == 1 else run_processes)(settings, parent.run_id, interrupt)
            except KeyboardInterrupt:
                status = "interrupted"
            elapsed = time.perf_counter() - started
            study = optuna.load_study(study_name=settings.study, storage=storage)
            if status == "finished" and count(study) < settings.trials:
                status = "stopped"  # the timeout, or the workers gave up
            if interrupt.requested:
                status = "interrupted"  # also a stop that came while the last trial was being recorded
            close_dead_trial_runs(study, tracker)
            parent.close_abandoned(study)
            if status != "interrupted":
                verify_best(study, settings)
            summary = {**summarize(study, settings, parent.run_id, elapsed), "experiment_id": tracker.experiment_id,
                       "stop_reason": stop_reason(gave_up, settings) if status == "stopped" else None}
            parent.finish(study, summary, "KILLED" if status == "interrupted" else "FINISHED")
        except BaseException as e:  # a second signal during the wrap-up, a lost database, a bug
            interrupt.ignore_further()
            study = optuna.load_study(study_name=settings.study, storage=storage)
            close_dead_trial_runs(study, tracker)
            parent.end_early(e)
            if not isinstance(e, KeyboardInterrupt):
                raise
            return Outcome("interrupted", summarize(study, settings, parent.run_id, time.perf_counter() - started))
    return Outcome(status, summary)


class ParentRun:
    """An invocation's MLflow run, started (tagged, and noted on the study) when made."""

    def __init__(self, tracker: Tracker, settings: SweepSettings, study: optuna.Study) -> None:
        self.tracker, self.settings = tracker, settings
        tags = {"optuna.study": settings.study, "sampler": settings.sampler, "pruner": settings.pruner,
                "objective": settings.objective, "storage": redact(settings.storage), "task": settings.task,
                "trials_target": str(settings.trials), "jobs": str(settings.jobs), "space": settings.space.source,
                "placement": settings.placement}
        self.run_id = tracker.start_parent(f"sweep-{settings.study}-{time.strftime('%Y%m%d-%H%M%S')}", tags)
        # an attribute of its own: invocations starting together would lose each other's ids in a shared list
        study.set_user_attr(PARENT_ATTR + self.run_id, True)

    def finish(self, study: optuna.Study, summary: dict, status: str) -> None:
        """Summary metrics, the study's plots and the best trial's checkpoint on the run, then end it."""
        tags = {"status": status.lower()}
        if summary.get("best_trial") is not None:
            tags["best_trial"] = str(summary["best_trial"])
        if summary.get("stop_reason"):
            tags["stop_reason"] = summary["stop_reason"]
        for key in ("best_scored", "best_verdict"):
            if summary.get(key):
                tags[key] = summary[key]
        try:
            plots = render_plots(study)
            if plots:
                self.tracker.log_files(self.run_id, plots, "plots")
            if summary.get("best_run_id"):
                self.tracker.copy_artifacts(summary["best_run_id"], "checkpoint", self.run_id, "best_trial")
        except Exception as e:  # plots and copies are extras; the sweep's results are already stored
            tags["artifact_error"] = one_line(e, 500)
        self.tracker.log_metrics(self.run_id, {k: summary[k] for k in SUMMARY_METRICS if summary.get(k) is not None})
        self.tracker.end(self.run_id, status, tags)

    def end_early(self, error: BaseException) -> None:
        """End the run, if it still runs, after `error` cut the sweep short: KILLED by a stop, FAILED otherwise."""
        if self.tracker.status(self.run_id) == "RUNNING":
            stopped = isinstance(error, KeyboardInterrupt)
            self.tracker.end(self.run_id, "KILLED" if stopped else "FAILED",
                             {"status": "interrupted" if stopped else f"failed: {one_line(error, 500)}"})

    def close_abandoned(self, study: optuna.Study) -> None:
        """Once the study is done and nothing runs, other parent runs still RUNNING belong to dead invocations."""
        if count(study) < self.settings.trials or count(study, ("RUNNING", "WAITING")):
            return  # other workers may still be at it
        for run_id in parent_runs(study):
            if run_id != self.run_id and self.tracker.status(run_id) == "RUNNING":
                self.tracker.end(run_id, "KILLED", {"status": "abandoned: its process died"})


def verify_best(study: optuna.Study, settings: SweepSettings) -> dict | None:
    """Score the best trial on every problem (tasks of at most EXHAUSTIVE_LIMIT), once per trial, and note
    what it found on the study; a trial whose final score already covered every problem is not scored again."""
    if not settings.single_objective or not any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
        return None
    if settings.objective == "length":  # its best generalises best; the trained problems are not what it ranks
        return None
    best = study.best_trial
    if verified(study, best.number):
        return verified(study, best.number)
    record = TrialRecord.from_trial(best)
    final = Score(**record.final) if record.final else None
    if final is None or not final.exhaustive:
        device, _ = pick_device(settings.device)
        with tempfile.TemporaryDirectory() as tmp:
            path, _ = trial_checkpoint(f"{settings.study}:{best.number}", tmp, settings.storage, settings.tracking_uri)
            checkpoint = load_checkpoint(path, device)
        if checkpoint.task.space_size() > EXHAUSTIVE_LIMIT:
            return None
        final = final_score(checkpoint.model, checkpoint.task, exhaustive=True,
                            workers=usable_cpus() if device.type == "cpu" else 1)
    figures = {"problems": final.problems, "wrong": final.wrong, "exact_match": final.exact_match,
               "seconds": final.seconds, "verdict": verdict(settings.task, f"{settings.study}:{best.number}",
                                                            {"problems": final.problems, "wrong": final.wrong})}
    set_verified(study, best.number, figures)
    return figures


def parent_runs(study: optuna.Study) -> list[str]:
    """Every invocation's parent run."""
    return [key.removeprefix(PARENT_ATTR) for key in study.user_attrs if key.startswith(PARENT_ATTR)]


def close_dead_trial_runs(study: optuna.Study, tracker: Tracker) -> None:
    """Trial runs still RUNNING whose trial has failed (its worker died) are ended as KILLED."""
    for trial in study.get_trials(deepcopy=False, states=states(("FAIL",))):
        record = TrialRecord.from_trial(trial)
        if record.mlflow_run_id and tracker.status(record.mlflow_run_id) == "RUNNING":
            tracker.end(record.mlflow_run_id, "KILLED", {"state": "FAIL",
                                                         "fail_reason": record.fail_reason or "worker died"})


def stop_reason(gave_up: str | None, settings: SweepSettings) -> str:
    """Why a sweep stopped short of its target: what its workers gave up on, else its --timeout.

    >>> from thinker.sweeps.space import load_space
    >>> stop_reason(None, SweepSettings(task="copy", trials=3, study="s", storage="", tracking_uri="",
    ...                                 experiment="e", space=load_space("copy"), timeout=60))
    'timeout'
    """
    if gave_up:
        return gave_up
    return "timeout" if settings.timeout else "the workers stopped without saying why"
