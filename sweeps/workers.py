"""Worker processes: each runs `study.optimize` against the shared storage until the study is done.

    gave_up = run_worker(settings, parent_run_id, interrupt)     # in this process
    gave_up = run_processes(settings, parent_run_id, interrupt)  # several: spawned processes

`gave_up` says why the workers stopped short of the study's target on their own (trials that kept
failing, a lost device, a worker that died), or is None: a sweep that stops short without a reason
stopped at its --timeout.

How many workers a machine runs, with how many threads and on which GPU, is decided before
(`placement`); worker i trains on `settings.gpus[i % len(gpus)]`. A stop (Ctrl-C, SIGTERM) reaches
the coordinator, which passes SIGINT on to its workers; each ends its running trial as KILLED.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from pathlib import Path

import optuna

from thinker.device import configure_torch
from thinker.sweeps.interrupt import Interrupt
from thinker.sweeps.logs import route_library_logs
from thinker.sweeps.objective import Objective, worker_id
from thinker.sweeps.repair import fail_trials_of
from thinker.sweeps.settings import FINISHED, SweepSettings
from thinker.sweeps.storage import open_storage
from thinker.sweeps.study import count, load_study, states

WORKER_GRACE_SECONDS = 60  # after a stop, how long a worker gets to close its trial
GAVE_UP = 3  # the exit code of a worker process that gave up on trials that kept failing
KEPT_FAILING = "its trials kept failing"


class FailureGuard:
    """Stop a worker whose trials keep failing (a broken space, a device that is gone), or that was asked to."""

    def __init__(self, limit: int, interrupt: Interrupt) -> None:
        self.limit, self.failures, self.interrupt = limit, 0, interrupt
        self.gave_up = False

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self.interrupt.requested:
            study.stop()
        if trial.state.name == "FAIL":
            self.failures += 1
            if self.failures >= self.limit:
                self.gave_up = True
                study.stop()


def run_worker(settings: SweepSettings, parent_run_id: str, interrupt: Interrupt, worker: int = 0) -> str | None:
    """Run trials until the study has `settings.trials` finished ones (or the timeout); KeyboardInterrupt on a stop.
    Returns why it gave up before that, if it did."""
    configure_torch(settings.threads)
    study = load_study(settings, open_storage(settings.storage), worker)
    objective = Objective(settings, parent_run_id, interrupt, worker)
    guard = FailureGuard(limit=max(5, settings.trials), interrupt=interrupt)
    study.optimize(
        objective, n_trials=None, timeout=settings.timeout, catch=(Exception,), gc_after_trial=True,
        callbacks=[optuna.study.MaxTrialsCallback(settings.trials, states=states(FINISHED)), guard])
    interrupt.check()  # a stop that came between trials, where nothing raised it
    return KEPT_FAILING if guard.gave_up or objective.device_gone else None


def _worker_main(settings_dict: dict, parent_run_id: str, worker: int) -> None:
    settings = SweepSettings(**settings_dict)
    route_library_logs(Path(settings.log_file) if settings.log_file else None, settings.verbose)
    with Interrupt() as interrupt:
        try:
            gave_up = run_worker(settings, parent_run_id, interrupt, worker)
        except KeyboardInterrupt:
            return  # the trial was recorded as failed and its run as KILLED; the coordinator reports
    if gave_up:
        sys.exit(GAVE_UP)


def run_processes(settings: SweepSettings, parent_run_id: str, interrupt: Interrupt) -> str | None:
    """`settings.jobs` worker processes; on a stop, pass SIGINT on and wait for them to close their trials.
    Returns why one of them gave up or died, if one did."""
    ctx = multiprocessing.get_context("spawn")  # no forked torch/sqlite state
    workers = [ctx.Process(target=_worker_main, args=(settings.to_dict(), parent_run_id, i), name=f"worker-{i}")
               for i in range(settings.jobs)]
    for p in workers:
        p.start()
    try:
        while (alive := [p.sentinel for p in workers if p.is_alive()]) and not interrupt.requested:
            multiprocessing.connection.wait(alive, timeout=0.5)
    except KeyboardInterrupt:  # a second signal
        interrupt.request()
    if interrupt.requested:
        # Ctrl-C in a terminal reaches the workers too; SIGTERM or a signal to this process alone does not.
        time.sleep(1.0)
        for p in workers:
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)
        deadline = time.monotonic() + WORKER_GRACE_SECONDS
        for p in workers:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
        raise KeyboardInterrupt
    died = [p for p in workers if p.exitcode not in (0, GAVE_UP)]
    if died:  # their trials would stay RUNNING until a later invocation's heartbeat check
        study = load_study(settings, open_storage(settings.storage))
        unfinished = count(study) < settings.trials  # else a retry would be left WAITING in a finished study
        for p in died:
            fail_trials_of(study, worker_id(p.pid), ended(p), retry=unfinished)
    return next((ended(p) for p in workers if p.exitcode), None)


def ended(worker: multiprocessing.Process) -> str:
    """Why a worker process that exited non-zero ended.

    >>> [ended(type("P", (), {"name": "worker-1", "exitcode": code})()) for code in (GAVE_UP, -9, 1)]
    ['its trials kept failing', 'worker-1 died (signal 9, SIGKILL)', 'worker-1 died (exit code 1)']
    """
    if worker.exitcode == GAVE_UP:
        return KEPT_FAILING
    if worker.exitcode < 0:
        try:
            return f"{worker.name} died (signal {-worker.exitcode}, {signal.Signals(-worker.exitcode).name})"
        except ValueError:  # a signal Python has no name for
            return f"{worker.name} died (signal {-worker.exitcode})"
    return f"{worker.name} died (exit code {worker.exitcode})"
