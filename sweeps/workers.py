"""Worker processes: each runs `study.optimize` against the shared storage until the study is done.

    run_worker(settings, parent_run_id, interrupt)     # in this process
    run_processes(settings, parent_run_id, interrupt)  # several: spawned processes

How many workers a machine runs, with how many threads and on which GPU, is decided before
(`placement`); worker i trains on `settings.gpus[i % len(gpus)]`. A stop (Ctrl-C, SIGTERM) reaches
the coordinator, which passes SIGINT on to its workers; each ends its running trial as KILLED.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from pathlib import Path

import optuna

from thinker.device import configure_torch
from thinker.sweeps.interrupt import Interrupt
from thinker.sweeps.logs import route_library_logs
from thinker.sweeps.objective import Objective
from thinker.sweeps.settings import FINISHED, SweepSettings
from thinker.sweeps.storage import open_storage
from thinker.sweeps.study import load_study, states

WORKER_GRACE_SECONDS = 60  # after a stop, how long a worker gets to close its trial


class FailureGuard:
    """Stop a worker whose trials keep failing (a broken space, a device that is gone), or that was asked to."""

    def __init__(self, limit: int, interrupt: Interrupt) -> None:
        self.limit, self.failures, self.interrupt = limit, 0, interrupt

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self.interrupt.requested:
            study.stop()
        if trial.state.name == "FAIL":
            self.failures += 1
            if self.failures >= self.limit:
                study.stop()


def run_worker(settings: SweepSettings, parent_run_id: str, interrupt: Interrupt, worker: int = 0) -> None:
    """Run trials until the study has `settings.trials` finished ones (or the timeout); KeyboardInterrupt on a stop."""
    configure_torch(settings.threads)
    study = load_study(settings, open_storage(settings.storage), worker)
    study.optimize(
        Objective(settings, parent_run_id, interrupt, worker), n_trials=None, timeout=settings.timeout,
        catch=(Exception,), gc_after_trial=True,
        callbacks=[optuna.study.MaxTrialsCallback(settings.trials, states=states(FINISHED)),
                   FailureGuard(limit=max(5, settings.trials), interrupt=interrupt)])
    interrupt.check()  # a stop that came between trials, where nothing raised it


def _worker_main(settings_dict: dict, parent_run_id: str, worker: int) -> None:
    settings = SweepSettings(**settings_dict)
    route_library_logs(Path(settings.log_file) if settings.log_file else None, settings.verbose)
    with Interrupt() as interrupt:
        try:
            run_worker(settings, parent_run_id, interrupt, worker)
        except KeyboardInterrupt:
            pass  # the trial was recorded as failed and its run as KILLED; the coordinator reports


def run_processes(settings: SweepSettings, parent_run_id: str, interrupt: Interrupt) -> None:
    """`settings.jobs` worker processes; on a stop, pass SIGINT on and wait for them to close their trials."""
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
