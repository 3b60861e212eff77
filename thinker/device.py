"""Choose the device once and keep the reason; synchronise only where it means something.

    >>> device, reason = pick_device("cpu")
    >>> device.type, reason
    ('cpu', 'asked for cpu')
"""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
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


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work; a no-op on CPU, where work is already done when a call returns."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
