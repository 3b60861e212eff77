"""How many trial processes a machine runs, with how many threads each, on which device.

    >>> plan_workers("cpu", [], "auto", cpu_count=2)
    Placement(workers=2, threads=1, gpus=[], reason='auto: one single-threaded trial per CPU core (2 cores)')
    >>> plan_workers("cuda", [0, 1], "auto", cpu_count=16, free_gib=[130.0, 130.0]).workers
    16
    >>> plan_workers("cpu", [], "3", cpu_count=2).threads
    1

A small model leaves a GPU mostly idle between kernel launches, so several trials share each GPU:
`auto` packs one trial process per CPU core that GPU can have (each process needs a core to launch
its kernels), at most one per `GIB_PER_TRIAL` of free GPU memory and at most `MAX_PER_GPU`. Measured
on an H200 with 16 cores: separate processes reached 4,952 samples/s (1), 17,911 (4), 26,004 (8),
33,382 (16). On a CPU, `auto` runs one single-threaded trial per core: two workers did 1.85x the
trials per hour of one on 2 cores, where torch's threads gain little on tensors this small.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from thinker.errors import ThinkerError

GIB_PER_TRIAL = 2.0  # a CUDA context and the caching allocator's pool for a model this size, with room
MAX_PER_GPU = 16
HOST_GIB_PER_WORKER = 0.5  # a floor for one worker process (torch, Optuna, MLflow) in host memory: CPU
# workers were seen at 0.44-0.50 GiB resident; on CUDA a context adds more


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
    thinker.sweeps.placement.PlacementError: --jobs 100: 100 worker processes need about 50 GiB of memory, \
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
