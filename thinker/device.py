"""Choose the device once and keep the reason; set process-wide torch switches in one place.

    >>> device, reason = pick_device("cpu")
    >>> device.type, reason
    ('cpu', 'asked for cpu')

`configure_torch` is the one place that sets threads and TF32: commands call it at their top (and
a sweep at the top of each trial), never an object as a side effect of being constructed.
"""

from __future__ import annotations

import contextlib
import gc

import torch

from thinker.errors import ThinkerError

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(ThinkerError, ValueError):
    """The requested device does not exist here."""


def pick_device(name: str = "auto") -> tuple[torch.device, str]:
    """`auto` takes CUDA when present; `cuda` without a GPU is an error, not a silent fallback."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise DeviceError(f"unknown device {name!r}; choose from: {', '.join(DEVICES)}")
    has_cuda = torch.cuda.is_available()
    if name == "auto":
        if has_cuda:
            return torch.device("cuda"), f"auto: found {torch.cuda.get_device_name()}"
        return torch.device("cpu"), "auto: no CUDA device found"
    if name.startswith("cuda"):
        if not has_cuda:
            raise DeviceError(f"--device {name} asked for, but no CUDA device is available")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return device, f"asked for {name} ({torch.cuda.get_device_name(device)})"
    return torch.device("cpu"), "asked for cpu"


def configure_torch(threads: int = 0, precision: str = "fp32") -> None:
    """Process-wide switches: CPU threads (0 leaves torch's default) and TF32 matmuls on CUDA.

    TF32 is on only for precision "tf32", so fp32 runs measure what they say.
    """
    if threads:
        torch.set_num_threads(threads)
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def current(device: torch.device):
    """Make `device` the current CUDA device inside the block (a no-op on CPU).

    CUDA events, streams and graph captures belong to the current device: a run on cuda:1 in a process
    whose current device is cuda:0 would time device 0's stream.
    """
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work; a no-op on CPU, where work is already done when a call returns."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release_memory(device: torch.device | None = None) -> None:
    """Free what a finished run left behind; on CUDA also return cached blocks and restart the peak counters."""
    gc.collect()
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def device_lost(error: BaseException) -> bool:
    """Whether `error` left this process's CUDA context unusable: after an illegal address, a failed
    launch or an ECC error every later CUDA call fails too. Running out of memory is not such an
    error (a smaller run still fits), nor is any error that did not come from CUDA.

    >>> device_lost(RuntimeError("CUDA error: an illegal memory access was encountered"))
    True
    >>> device_lost(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    False
    """
    text = str(error)
    if isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in text:
        return False
    accelerator_error = getattr(torch, "AcceleratorError", None)  # torch 2.8 and later
    if accelerator_error is not None and isinstance(error, accelerator_error):
        return True
    return isinstance(error, RuntimeError) and "CUDA error" in text
