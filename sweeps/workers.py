"""Worker processes: how many a machine runs, with how many threads each, on which device; and running them.

    >>> plan_workers("cpu", [], "auto", cpu_count=2)
    Placement(workers=2, threads=1, gpus=[], reason='auto: one single-threaded trial per CPU core (2 cores)')
    >>> plan_workers("cuda", [0, 1], "auto", cpu_count=16, free_gib=[130.0, 130.0]).workers
    16
    >>> gave_up = run_worker(settings, parent_run_id, interrupt)     # doctest: +SKIP
    >>> gave_up = run_processes(settings, parent_run_id, interrupt)  # doctest: +SKIP

A small model leaves a GPU mostly idle between kernel launches, so several trials share each GPU:
`auto` packs one trial process per CPU core that GPU can have (each process needs a core to launch
its kernels), at most one per `GIB_PER_TRIAL` of free GPU memory and at most `MAX_PER_GPU`. Measured
on an H200 with 16 cores: separate processes reached 4,952 samples/s (1), 17,911 (4), 26,004 (8),
33,382 (16). On a CPU, `auto` runs one single-threaded trial per core: two workers did 1.85x the
trials per hour of one on 2 cores, where torch's threads gain little on tensors this small. Worker i
trains on `settings.gpus[i % len(gpus)]`.

Each worker runs `study.optimize` against the shared storage until the study has its trials. `gave_up`
says why the workers stopped short of that on their own (trials that kept failing, a lost device, a
worker that died), or is None: a sweep that stops short without a reason stopped at its --timeout. A
stop (Ctrl-C, SIGTERM) reaches the coordinator, which passes SIGINT on to its workers; each ends its
running trial as KILLED. The trials of a worker that died are failed and queued again at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from thinker.device import configure_torch
from thinker.errors import ThinkerError
from thinker.sweeps.interrupt import Interrupt
from thinker.sweeps.logs import route_library_logs
from thinker.sweeps.objective import Objective, worker_id
from thinker.sweeps.settings import SweepSettings
from thinker.sweeps.study import count, fail_trials_of, load_study, open_storage, states
from thinker.sweeps.trial import FINISHED

GIB_PER_TRIAL = 2.0  # a CUDA context and the caching allocator's pool for a model this size, with room
MAX_PER_GPU = 16
HOST_GIB_PER_WORKER = 0.5  # a floor for one worker process (torch, Optuna, MLflow) in host memory: CPU
# workers were seen at 0.44-0.50 GiB resident; on CUDA a context adds more
WORKER_GRACE_SECONDS = 60  # after a stop, how long a worker gets to close its trial
log = logging.getLogger(__name__)
GAVE_UP = 3  # the exit code of a worker process that gave up on trials that kept failing
KEPT_FAILING = "its trials kept failing"


class PlacementError(ThinkerError):
    """A --trials-per-device value that is neither a positive number nor auto."""


@dataclass
class Placement:
    workers: int
    threads: int  # torch threads per worker (0: torch's default)
    gpus: list[int] = field(default_factory=list)  # worker i trains on gpus[i % len(gpus)]
    reason: str = ""


def check_host_memory(workers: int, available_gib: float, option: str) -> None:
    """PlacementError if `workers` processes would not fit in the host memory available: thousands of
    workers asked for by a slip of the keyboard must be one line, not a machine swapping to a halt.

    >>> check_host_memory(100, available_gib=20.0, option="--jobs 100")
    Traceback (most recent call last):
    thinker.sweeps.workers.PlacementError: --jobs 100: 100 worker processes need about 50 GiB of memory, \
this machine has 20 GiB available (at most 40 workers)
    """
    if workers * HOST_GIB_PER_WORKER > available_gib:
        most = max(1, int(available_gib / HOST_GIB_PER_WORKER))
        raise PlacementError(f"{option}: {workers:,} worker processes need about "
                             f"{workers * HOST_GIB_PER_WORKER:,.0f} GiB of memory, this machine has "
                             f"{available_gib:,.0f} GiB available (at most {most} workers)")


def parse_per_device(text: str) -> int | None:
    """`auto` -> None, a positive integer -> itself."""
    if text == "auto":
        return None
    if not text.isdecimal() or int(text) < 1:
        raise PlacementError(f"--trials-per-device takes a positive number or auto, got {text!r}")
    return int(text)


def plan_workers(device_type: str, gpus: list[int], per_device: str, cpu_count: int,
                 free_gib: list[float] | None = None) -> Placement:
    """Workers and threads for `per_device` trials on each device (`auto` decides from the machine)."""
    wanted = parse_per_device(per_device)
    cpu_count = max(1, cpu_count)
    if device_type == "cuda":
        gpus = gpus or [0]
        if wanted is None:
            cores = max(1, cpu_count // len(gpus))
            memory = min(int(gib // GIB_PER_TRIAL) for gib in (free_gib or [GIB_PER_TRIAL])) or 1
            wanted = max(1, min(cores, memory, MAX_PER_GPU))
            reason = (f"auto: {wanted} trials per GPU (limits: {cores} CPU cores per GPU, {memory} by free "
                      f"memory at {GIB_PER_TRIAL:g} GiB each, {MAX_PER_GPU} at most)")
        else:
            reason = f"{wanted} trial(s) per GPU"
        workers = wanted * len(gpus)
        return Placement(workers, max(1, cpu_count // workers), gpus, reason)
    if wanted is None:
        return Placement(cpu_count, 1, [], f"auto: one single-threaded trial per CPU core ({cpu_count} cores)")
    threads = max(1, cpu_count // wanted) if wanted > 1 else 0
    return Placement(wanted, threads, [], f"{wanted} trial(s) on the CPU")


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
    deadline = None if settings.timeout is None else time.monotonic() + settings.timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            study.optimize(
                objective, n_trials=None, timeout=left, catch=(Exception,), gc_after_trial=True,
                callbacks=[optuna.study.MaxTrialsCallback(settings.trials, states=states(FINISHED)), guard])
            break
        except ValueError as e:
            if not taken_as_dead(e):
                raise
            # Another worker's heartbeat check failed this worker's trial as stale (its heartbeat came late,
            # as under heavy load) and queued it again: this worker is alive, so it goes on with the next.
            log.warning("a trial of this worker was failed as stale by another worker and queued again: %s", e)
    interrupt.check()  # a stop that came between trials, where nothing raised it
    return KEPT_FAILING if guard.gave_up or objective.device_gone else None


def taken_as_dead(error: BaseException) -> bool:
    """Whether Optuna refused to record a trial's end because the trial was already failed (as stale).

    >>> taken_as_dead(ValueError("Cannot tell a FAIL trial.")), taken_as_dead(ValueError("bad value"))
    (True, False)
    """
    return "Cannot tell a FAIL trial" in str(error)


def _worker_main(settings: SweepSettings, parent_run_id: str, worker: int) -> None:
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
    workers = [ctx.Process(target=_worker_main, args=(settings, parent_run_id, i), name=f"worker-{i}")
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
        storage = open_storage(settings.storage)
        study = load_study(settings, storage)
        unfinished = count(study) < settings.trials  # else a retry would be left WAITING in a finished study
        for p in died:
            fail_trials_of(study, storage, worker_id(p.pid), ended(p), retry=unfinished)
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
