"""The variants `thinker bench` compares: the same training step, configured differently.

    >>> parse_variants("eager,bf16")
    ['eager', 'bf16']
    >>> parse_batch_sizes("64,256")
    [64, 256]
    >>> skip_reason(VARIANTS["tf32"], torch.device("cpu"))
    'tf32 needs CUDA'

Every variant but `fused` and `graph` uses the unfused (for-each) AdamW and eager steps, so `fused`
is a real comparison on CUDA too, where `TrainStep` would pick the fused optimizer and CUDA graphs
by default. `graph` is what `thinker train` runs on CUDA: fused AdamW, the step replayed as graphs.
`sdpa` and `matmul` compute attention with PyTorch's fused kernels or as two matrix products and a
softmax (`ThinkerConfig.attention`); eager uses the second on CPUs and the first on GPUs, so each
is the other device's alternative.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from thinker.errors import ThinkerError
from thinker.machine import native_bf16
from thinker.parsing import int_list
from thinker.training import TrainConfig


class VariantError(ThinkerError):
    """An unknown variant or a bad batch-size list."""


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str = "fp32"
    compile: bool = False
    fused: bool = False
    graph: bool = False
    attention: str = "auto"  # ThinkerConfig.attention: the kernel, never the function

    def config(self, base: TrainConfig, batch_size: int | None = None) -> TrainConfig:
        return base.replace(precision=self.precision, compile=self.compile, cuda_graph=self.graph,
                            attention=self.attention, batch_size=batch_size or base.batch_size)


VARIANTS = {v.name: v for v in (
    Variant("eager"),
    Variant("tf32", precision="tf32"),
    Variant("bf16", precision="bf16"),
    Variant("compile", compile=True),
    Variant("fused", fused=True),
    Variant("graph", fused=True, graph=True),
    Variant("sdpa", attention="sdpa"),
    Variant("matmul", attention="matmul"),
)}
# CPU: torch.compile takes minutes to build on 2 cores and a scan past 1024 takes longer than the rest
DEFAULT_VARIANTS = {"cuda": ("eager", "tf32", "bf16", "compile", "fused", "graph", "matmul"),
                    "cpu": ("eager", "bf16", "fused")}
DEFAULT_BATCH_SIZES = {"cuda": (64, 256, 1024, 4096, 16384), "cpu": (256, 1024)}


def parse_variants(text: str | None, device_type: str = "cpu") -> list[str]:
    """Comma-separated variant names; None gives the device's defaults, "" or "none" no variants."""
    if text is None:
        return list(DEFAULT_VARIANTS.get(device_type, DEFAULT_VARIANTS["cpu"]))
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]
    for name in names:
        if name not in VARIANTS:
            raise VariantError(f"unknown variant {name!r}; choose from: {', '.join(VARIANTS)}")
    return list(dict.fromkeys(names))  # keep order, drop repeats


def parse_batch_sizes(text: str | None, device_type: str = "cpu") -> list[int]:
    """Comma-separated batch sizes for the scan; None gives the device's defaults, "none" no scan."""
    if text is None:
        return list(DEFAULT_BATCH_SIZES.get(device_type, DEFAULT_BATCH_SIZES["cpu"]))
    parts = [p for p in (p.strip() for p in text.split(",")) if p and p != "none"]
    return sorted(set(int_list(",".join(parts), "--batch-sizes", minimum=1))) if parts else []


def skip_reason(variant: Variant, device: torch.device, explicit: bool = False) -> str | None:
    """Why `device` cannot (or, unasked, should not) run `variant`: a short phrase, or None.

    bf16 on a CPU without it in hardware is emulated and takes minutes: only run when asked for.
    """
    if variant.precision == "bf16" and device.type == "cpu" and not explicit and not native_bf16():
        return "no native bf16 on this CPU (AVX512-BF16 or AMX); --variants bf16 runs it emulated"
    if variant.graph and device.type != "cuda":
        return "CUDA graphs need CUDA"
    if variant.attention == ("matmul" if device.type == "cpu" else "sdpa"):
        return f"eager already computes attention this way on {device.type.upper()}"
    if variant.precision == "tf32":
        if device.type != "cuda":
            return "tf32 needs CUDA"
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            return f"tf32 needs compute capability 8.0+, this GPU is {major}.{minor}"
    if variant.precision == "bf16" and device.type == "cuda":
        with torch.cuda.device(device):
            if not torch.cuda.is_bf16_supported(including_emulation=False):
                return f"no native bf16 on {torch.cuda.get_device_name(device)}"
    return None  # a torch.compile that cannot build here becomes a "compile failed" row when it is tried
