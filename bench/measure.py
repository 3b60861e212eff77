"""Measure one variant: the trainer's own `TrainStep`, warmed up, then timed two ways.

    >>> from thinker.bench.variants import VARIANTS
    >>> cfg = TrainConfig.from_dict({"task": "copy", "device": "cpu", "d_model": 16, "n_heads": 2, "n_layers": 1})
    >>> row = measure(VARIANTS["eager"], cfg, torch.device("cpu"), warmup=1, iters=2, peak=(1.0, "test"))
    >>> row["status"], row["batch_size"], row["steps_measured"]
    ('ok', 64, 2)

Two clocks: the step's `PhaseTimer` (CUDA events on GPU, perf_counter on CPU) splits every step
into data / forward+loss / backward+optimizer, and those three add up to its step time by
construction. Independently, the whole measured loop is timed with `perf_counter` between two device
synchronisations; `wall_ratio` = step_ms / wall_step_ms shows how much the phase clock misses
(work between steps). Throughput and MFU use the wall clock: it is what a training run gets.

On CUDA a few more steps then run under torch.profiler and torch's sync debug mode: host calls that
launch GPU work per step (kernel launches; a replayed CUDA graph is one launch), kernels the GPU ran
per step, and host synchronisations per step (every implicit sync torch makes: `.item()`, a copy to
the host, a data-dependent shape).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import torch

from thinker.bench.monitors import INTERVAL_S, CpuMonitor, UsageMonitor
from thinker.bench.nvml import GpuMonitor
from thinker.bench.variants import Variant
from thinker.device import synchronize
from thinker.training import PHASES, TrainConfig, TrainStep
from thinker.training.graph import host_syncs
from thinker.training.step import GRAPH_WARMUP

PROFILE_STEPS = 5
OP_ROWS = 30  # ops in a profile's table
COUNT_STEPS = 10
# host-side CUDA runtime/driver calls that put work on the GPU
LAUNCH_CALLS = frozenset({"cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
                          "cudaLaunchCooperativeKernel", "cudaGraphLaunch"})
CUDA_API = re.compile(r"cu(da)?[A-Z]")  # a CUDA runtime or driver call: cudaMemcpyAsync, cuLaunchKernel, ...
COMMON_FIELDS = ("variant", "base", "device", "batch_size", "precision", "compile", "fused", "status", "seq_len",
                 "samples_per_s", "tokens_per_s", "step_ms", "wall_step_ms", "wall_ratio", "data_ms",
                 "forward_ms", "backward_ms", "phase_sum_ratio", "step_ms_min", "steps_measured",
                 "peak_memory_mb", "achieved_tflops", "peak_tflops", "peak_source", "mfu", "speedup", "note")
CUDA_FIELDS = ("reserved_memory_mb", "nvml_memory_mb", "gpu_util", "sm_activity", "sm_occupancy", "power_w",
               "launches_per_step", "kernels_per_step", "syncs_per_step")
CPU_FIELDS = ("rss_mb", "cpu_percent", "system_cpu_percent")


def blank_row(label: str, variant: Variant, cfg: TrainConfig, device: torch.device, status: str = "ok") -> dict:
    """A row with every field present (None until measured), so skipped rows have the same shape."""
    row = dict.fromkeys(COMMON_FIELDS + (CUDA_FIELDS if device.type == "cuda" else CPU_FIELDS))
    row.update(variant=label, device=str(device), batch_size=cfg.batch_size, precision=variant.precision,
               compile=variant.compile, fused=variant.fused, status=status)
    return row


def usage_monitor(device: torch.device, interval: float = INTERVAL_S) -> UsageMonitor:
    """NVML on CUDA, psutil on CPU, read every `interval` seconds."""
    return GpuMonitor(device, interval) if device.type == "cuda" else CpuMonitor(interval)


def sequence_length(step: TrainStep) -> int:
    """Tokens per sample, from a batch drawn with its own generator (the step's stays untouched)."""
    generator = torch.Generator(step.device).manual_seed(0)
    return int(step.task.sample(1, generator).inputs.shape[1])


def measure(variant: Variant, cfg: TrainConfig, device: torch.device, *, warmup: int, iters: int,
            min_seconds: float = 0.0, peak: tuple[float | None, str], label: str | None = None,
            profile_dir: Path | None = None) -> dict:
    """One row: warm up, then time at least `iters` steps and at least `min_seconds`.

    Errors (out of memory, a failing torch.compile) propagate: the caller decides what they mean.
    """
    row = blank_row(label or variant.name, variant, cfg, device)
    step = TrainStep(cfg, device, fused=variant.fused)
    seq_len = sequence_length(step)
    for _ in range(max(warmup, GRAPH_WARMUP + 2) if step.graphed else warmup):  # a graph row times replays
        step()
    if variant.graph and step.graphs is None:
        raise RuntimeError(f"no CUDA graphs ({step.graph_error})")
    synchronize(device)
    step.timer.collect()  # drop the warm-up steps' timings

    monitor = usage_monitor(device)
    monitor.start()
    synchronize(device)
    start = time.perf_counter()
    n = 0
    # The time check reads the host clock without a sync: the host runs ahead by at most a queue.
    while n < iters or time.perf_counter() - start < min_seconds:
        step()
        n += 1
    synchronize(device)
    wall_s = time.perf_counter() - start
    usage = monitor.stop()
    steps = step.timer.collect()

    phase_ms = {phase: sum(s[phase] for s in steps) / n for phase in PHASES}  # means add up, medians don't
    step_ms = sum(s["step"] for s in steps) / n
    wall_step_ms = wall_s * 1000 / n
    samples_per_s = cfg.batch_size * n / wall_s
    tokens_per_s = samples_per_s * seq_len
    achieved = step.model.flops_per_token(seq_len) * tokens_per_s / 1e12
    peak_tflops, peak_source = peak
    row.update(seq_len=seq_len, samples_per_s=samples_per_s, tokens_per_s=tokens_per_s, step_ms=step_ms,
               wall_step_ms=wall_step_ms, wall_ratio=step_ms / wall_step_ms,
               data_ms=phase_ms["data"], forward_ms=phase_ms["forward"], backward_ms=phase_ms["backward"],
               phase_sum_ratio=sum(phase_ms.values()) / step_ms, step_ms_min=min(s["step"] for s in steps),
               steps_measured=n, achieved_tflops=achieved, peak_tflops=peak_tflops, peak_source=peak_source,
               mfu=achieved / peak_tflops if peak_tflops else None)
    if row["mfu"] is not None and row["mfu"] > 1:  # a peak that is no upper bound: say so, print no MFU
        row["note"] = f"MFU left out: {achieved:.3g} TFLOP/s is above the peak ({peak_source})"
        row["mfu"] = None
    row.update({k: v for k, v in usage.items() if k in row})
    if device.type == "cuda":
        row["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        row["reserved_memory_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
    else:
        row["peak_memory_mb"] = row["rss_mb"]  # the process's resident set: CPU has no allocator stats
    if device.type == "cuda":
        counts = launches_and_syncs(step)
        notes = [row["note"], counts.pop("note", None)]
        row.update(counts, note="; ".join(n for n in notes if n) or None)
    if profile_dir is not None:
        row["trace"] = str(profile(step, profile_dir / f"trace-{row['variant']}.json"))
    return row


def profile(step: TrainStep, path: Path, steps: int = PROFILE_STEPS) -> Path:
    """A chrome trace (chrome://tracing, ui.perfetto.dev) of a few steps, phases shown by name, and beside
    it (same name, .txt) the ops that took the most time: the device's time on CUDA, the CPU's here."""
    cuda = step.device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize(step.device)
    step.timer.collect()
    prof.export_chrome_trace(str(path))
    order = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=order, row_limit=OP_ROWS, max_name_column_width=60)
    path.with_suffix(".txt").write_text(f"{steps} steps of batch {step.cfg.batch_size}, ops by {order}\n{table}\n")
    return path


def launches_and_syncs(step: TrainStep, steps: int = COUNT_STEPS) -> dict:
    """Per step over `steps` steady-state steps: launch calls, kernels run and host synchronisations.

    Launches and kernels are None, with a note, where the profiler recorded no CUDA activity at all
    (profiling not permitted, say): zero would read as "the graphs removed every launch"."""
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    syncs: list[str] = []
    with torch.profiler.profile(activities=activities) as prof, host_syncs(syncs):
        for _ in range(steps):
            step()
    synchronize(step.device)
    step.timer.collect()
    launches, kernels = count_launches(prof.events())
    counts = {"launches_per_step": None if launches is None else launches / steps,
              "kernels_per_step": None if kernels is None else kernels / steps,
              "syncs_per_step": len(syncs) / steps}
    if launches is None:
        counts["note"] = "launches and kernels not counted: the profiler recorded no CUDA activity"
    return counts


def count_launches(events) -> tuple[int | None, int | None]:
    """(host launch calls, GPU kernels) among torch.profiler events; (None, None) when the events hold no
    CUDA activity at all, neither a CUDA runtime call nor a GPU event: nothing was seen, not nothing ran.

    >>> from types import SimpleNamespace as E
    >>> cpu, gpu = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA
    >>> count_launches([E(name="cudaLaunchKernel", device_type=cpu), E(name="cudaGraphLaunch", device_type=cpu),
    ...                 E(name="aten::mm", device_type=cpu), E(name="gemm_kernel", device_type=gpu),
    ...                 E(name="Memcpy HtoD (Pageable -> Device)", device_type=gpu)])
    (2, 1)
    >>> count_launches([E(name="aten::mm", device_type=cpu), E(name="aten::add_", device_type=cpu)])
    (None, None)
    """
    cuda = torch.autograd.DeviceType.CUDA
    seen = any(e.device_type == cuda or CUDA_API.match(e.name) for e in events)
    if not seen:
        return None, None
    launches = sum(1 for e in events if e.device_type != cuda and e.name in LAUNCH_CALLS)
    kernels = sum(1 for e in events if e.device_type == cuda and not e.name.startswith(("Memcpy", "Memset")))
    return launches, kernels
