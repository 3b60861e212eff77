"""Run a sweep: create or resume the study, run the workers, then summarise into the parent MLflow run.

    >>> settings = SweepSettings(task="copy", trials=3, study="copy", storage="sqlite:///optuna.db",
    ...                          tracking_uri="sqlite:///mlflow.db", experiment="thinker-copy", space="copy")
    >>> outcome = run_sweep(settings)  # doctest: +SKIP

`--trials N` is the study's target of finished (complete or pruned) trials, counted across every
invocation and worker, so rerunning a command resumes it and raising N adds trials. Workers talk
to the storage and the tracking store directly; both were initialised here first, so they never
race to create tables. However the sweep ends (finished, stopped, interrupted, an error), the
parent run is ended: never left RUNNING.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna

from thinker.errors import one_line
from thinker.sweeps.interrupt import Interrupt
from thinker.sweeps.repair import close_abandoned_parents, close_dead_trial_runs, record_parent
from thinker.sweeps.settings import SweepSettings
from thinker.sweeps.storage import open_storage, redact
from thinker.sweeps.study import count, create_study
from thinker.sweeps.summary import finish_parent, summarize
from thinker.sweeps.tracking import Tracker
from thinker.sweeps.workers import run_processes, run_worker


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
        tags = {"optuna.study": settings.study, "sampler": settings.sampler, "pruner": settings.pruner,
                "objective": settings.objective, "storage": redact(settings.storage), "task": settings.task,
                "trials_target": str(settings.trials), "jobs": str(settings.jobs), "space": settings.space,
                "placement": settings.placement}
        parent_id = tracker.start_parent(f"sweep-{settings.study}-{time.strftime('%Y%m%d-%H%M%S')}", tags)
        started = time.perf_counter()
        try:
            record_parent(study, parent_id)
            status, gave_up = "finished", None
            try:
                interrupt.check()  # stopped while the study was being set up: start no trial
                with watch(Started(settings, done, parent_id)) if watch else contextlib.nullcontext():
                    if settings.jobs == 1:
                        gave_up = run_worker(settings, parent_id, interrupt)
                    else:
                        gave_up = run_processes(settings, parent_id, interrupt)
            except KeyboardInterrupt:
                status = "interrupted"
            elapsed = time.perf_counter() - started
            study = optuna.load_study(study_name=settings.study, storage=storage)
            if status == "finished" and count(study) < settings.trials:
                status = "stopped"  # the timeout, or the workers gave up
            if interrupt.requested:
                status = "interrupted"  # also a stop that came while the last trial was being recorded
            close_dead_trial_runs(study, tracker)
            close_abandoned_parents(study, settings, tracker, parent_id)
            summary = {**summarize(study, settings, parent_id, elapsed), "experiment_id": tracker.experiment_id,
                       "stop_reason": stop_reason(gave_up, settings) if status == "stopped" else None}
            finish_parent(tracker, study, settings, parent_id, summary,
                          "KILLED" if status == "interrupted" else "FINISHED")
        except BaseException as e:  # a second signal during the wrap-up, a lost database, a bug
            interrupt.ignore_further()
            stopped = isinstance(e, KeyboardInterrupt)
            study = optuna.load_study(study_name=settings.study, storage=storage)
            close_dead_trial_runs(study, tracker)
            if tracker.status(parent_id) == "RUNNING":
                tracker.end(parent_id, "KILLED" if stopped else "FAILED",
                            {"status": "interrupted" if stopped else f"failed: {one_line(e, 500)}"})
            if not stopped:
                raise
            return Outcome("interrupted", summarize(study, settings, parent_id, time.perf_counter() - started))
    return Outcome(status, summary)


def stop_reason(gave_up: str | None, settings: SweepSettings) -> str:
    """Why a sweep stopped short of its target: what its workers gave up on, else its --timeout.

    >>> stop_reason(None, SweepSettings(task="copy", trials=3, study="s", storage="", tracking_uri="",
    ...                                 experiment="e", space="copy", timeout=60))
    'timeout'
    """
    if gave_up:
        return gave_up
    return "timeout" if settings.timeout else "the workers stopped without saying why"
