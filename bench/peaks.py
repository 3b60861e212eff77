"""Peak FLOP/s to compute MFU against: a datasheet table for known GPUs, a matmul probe otherwise.

    >>> gpu_peak("NVIDIA H200", "bf16")
    (989.0, 'table: H200 bf16')
    >>> gpu_peak("Tesla T4", "bf16")
    (None, 'table: T4 has no bf16 peak')
    >>> gpu_peak("NVIDIA L40S", "fp32") is None  # "L4" must not match "L40S"
    True

Which peak a variant is measured against: the precision its matmuls actually run in. Each bench row
starts with `thinker.device.configure_torch`, which turns TF32 off unless `precision == "tf32"`, so the
fp32 variants (eager, compile, fused and the batch scan on them) use the plain fp32 (CUDA-core) peak,
`tf32` the TF32 tensor-core peak and `bf16` the bf16 tensor-core peak. All table figures are dense
(no 2:4 sparsity), in TFLOP/s.

On a GPU the table does not know, the peak is measured: square matmuls in the variant's dtype. On a
CPU it is the larger of such a probe (time-boxed to about two seconds) and an upper bound from the
vector extensions, clock and threads: a probe alone reads below what the step can reach (a CPU
without native bf16 measured 0.00027 TFLOP/s and an MFU of 1366%), so MFU could pass 100%.
"""

from __future__ import annotations

import re
import time

import torch

from thinker.device import synchronize
from thinker.machine import cpu_ghz, cpu_vector_flags

# (name fragment matched as a whole word in torch.cuda.get_device_name(), {precision: TFLOP/s}),
# most specific first. None: the chip has no such tensor-core path.
GPU_PEAKS: tuple[tuple[str, dict[str, float | None]], ...] = (
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    ("H200", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.0, "fp16": 989.0}),  # same chip as H100 SXM
    ("H100", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.0, "fp16": 989.0}),  # SXM
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    ("A10", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}),  # not A10G (word match)
    ("L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    ("RTX 4090", {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2}),  # fp32 accumulate
    ("V100", {"fp32": 15.7, "tf32": None, "bf16": None, "fp16": 125.0}),  # SXM2
    ("T4", {"fp32": 8.1, "tf32": None, "bf16": None, "fp16": 65.0}),
)
PROBE_SECONDS = 2.0  # the whole probe, however slow the machine: sizes grow only while there is time
PROBE_SIZES = {"cpu": (256, 512, 1024, 2048), "cuda": (2048, 4096, 8192)}
# FLOPs per cycle per core by the best vector extension, for an upper bound on a CPU's peak:
# 2 (fused multiply-add) x lanes x 2 FMA units; AMX tiles do 1024 bf16 FLOPs per cycle.
CPU_FLOPS_PER_CYCLE = {"fp32": (("avx512f", 64), ("avx2", 32), ("", 8)),
                       "bf16": (("amx_bf16", 1024), ("avx512_bf16", 128), ("avx512f", 64), ("avx2", 32), ("", 8))}
BOOST_ALLOWANCE = 1.5  # /proc/cpuinfo gives the current clock; turbo can run this much faster
_probed: dict[tuple, float] = {}  # one probe per (device, precision, threads) per process


def gpu_peak(name: str, precision: str) -> tuple[float | None, str] | None:
    """(TFLOP/s or None, where it came from) for a known GPU name; None for an unknown GPU."""
    for fragment, peaks in GPU_PEAKS:
        if re.search(rf"(?<![\w-]){re.escape(fragment)}(?![\w])", name):
            tflops = peaks.get(precision)
            if tflops is None:
                return None, f"table: {fragment} has no {precision} peak"
            return tflops, f"table: {fragment} {precision}"
    return None


def probe_tflops(device: torch.device, precision: str, seconds: float = PROBE_SECONDS) -> float:
    """Measured matmul TFLOP/s in `precision`'s dtype: the fastest square matmul of growing sizes,
    all within about `seconds` (a CPU that emulates bf16 takes seconds for one large one)."""
    key = (str(device), precision, torch.get_num_threads())
    if key in _probed:
        return _probed[key]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    best, start = 0.0, time.perf_counter()
    for size in PROBE_SIZES["cuda" if device.type == "cuda" else "cpu"]:
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        out = torch.empty(size, size, device=device, dtype=dtype)
        torch.matmul(a, b, out=out)  # warm-up: library load, kernel selection
        synchronize(device)
        fastest, n, begun = float("inf"), 0, time.perf_counter()
        while n < 3 and time.perf_counter() - start < seconds or n == 0:
            tick = time.perf_counter()
            torch.matmul(a, b, out=out)
            synchronize(device)
            fastest = min(fastest, time.perf_counter() - tick)
            n += 1
        # The fastest matmul, not the average: other work on a shared machine only ever slows a run
        # down, and a peak set too low pushes MFU past 1.
        best = max(best, 2 * size**3 / fastest / 1e12)
        if time.perf_counter() - start + 4 * (time.perf_counter() - begun) > seconds:
            break  # the next size would take about 8x as long: stop inside the time box
    _probed[key] = best
    return best


def cpu_peak(precision: str, threads: int) -> tuple[float | None, str]:
    """An upper bound on the CPU's TFLOP/s from its vector extensions, clock and threads."""
    flags = set(cpu_vector_flags())
    per_cycle, flag = next((n, f) for f, n in CPU_FLOPS_PER_CYCLE["bf16" if precision == "bf16" else "fp32"]
                           if not f or f in flags)
    ghz = cpu_ghz()
    if ghz is None:
        return None, "no clock rate in /proc/cpuinfo"
    tflops = threads * ghz * BOOST_ALLOWANCE * per_cycle / 1e3
    how = f"{threads} threads x {ghz:.2f} GHz x {BOOST_ALLOWANCE} boost x {per_cycle} FLOP/cycle"
    return tflops, f"{how} ({flag or 'scalar'})"


def peak_tflops(device: torch.device, precision: str, override: float | None = None) -> tuple[float | None, str]:
    """The peak to divide by for one variant: `--peak-tflops`, else the GPU table, else the larger
    of a matmul probe and (CPU) the vector-extension bound, so that it is an upper bound."""
    if override is not None:
        return override, "--peak-tflops"
    if device.type == "cuda":
        known = gpu_peak(torch.cuda.get_device_name(device), precision)
        if known is not None:
            return known
        return probe_tflops(device, precision), f"probe: {precision} matmul"
    probed = probe_tflops(device, precision)
    bound, source = cpu_peak(precision, torch.get_num_threads())
    if bound is not None and bound >= probed:
        return bound, f"ISA bound: {source}"
    return probed, f"probe: {precision} matmul"
