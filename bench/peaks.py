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

On CPU, and on a GPU the table does not know, the peak is measured: square matmuls in the variant's
dtype for about a second. A measured peak is below the datasheet's, so MFU against it reads higher.
"""

from __future__ import annotations

import re
import time

import torch

from thinker.device import synchronize

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
PROBE_SECONDS = 1.0
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


def probe_tflops(device: torch.device, precision: str, seconds: float = PROBE_SECONDS,
                 size: int | None = None) -> float:
    """Measured matmul TFLOP/s on `device` in `precision`'s dtype: the fastest of ~`seconds` of
    matmuls (cached per process)."""
    size = size or (2048 if device.type == "cpu" else 8192)
    key = (str(device), precision, size, torch.get_num_threads())
    if key in _probed:
        return _probed[key]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    torch.matmul(a, b, out=out)  # warm-up: library load, kernel selection
    synchronize(device)
    fastest, n, start = float("inf"), 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        tick = time.perf_counter()
        torch.matmul(a, b, out=out)
        synchronize(device)
        fastest = min(fastest, time.perf_counter() - tick)
        n += 1
    # The fastest matmul, not the average: other work on a shared machine only ever slows a run down,
    # and a peak set too low would push MFU past 1.
    _probed[key] = 2 * size**3 / fastest / 1e12
    return _probed[key]


def peak_tflops(device: torch.device, precision: str, override: float | None = None) -> tuple[float | None, str]:
    """The peak to divide by for one variant: `--peak-tflops`, else the GPU table, else a probe."""
    if override is not None:
        return override, "--peak-tflops"
    if device.type == "cuda":
        known = gpu_peak(torch.cuda.get_device_name(device), precision)
        if known is not None:
            return known
    size = 2048 if device.type == "cpu" else 8192
    return probe_tflops(device, precision, size=size), f"probe: {precision} {size}x{size} matmul"
