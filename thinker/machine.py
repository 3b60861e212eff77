"""What machine a figure was measured on: CPU model and vector extensions, threads, torch, GPU.

    >>> info = describe(torch.device("cpu"))
    >>> sorted(info)[:4]
    ['cpu', 'cpu_cores', 'cpu_threads', 'cpu_vector']

Absolute times only compare on the same machine (two 2-core CPUs ran the same bench 2.5x apart),
so every results file carries this record.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from thinker.nvml import driver_version

# The extensions that decide CPU matmul speed, in the order they appeared.
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_name() -> str:
    """The CPU model ("AMD EPYC ...") where /proc/cpuinfo says, else what `platform` knows."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_vector_flags() -> list[str]:
    """Which of VECTOR_FLAGS this CPU has (x86 only; empty elsewhere)."""
    flags = set(_cpuinfo().get("flags", "").split())
    return [f for f in VECTOR_FLAGS if f in flags]


def cpu_quota(cgroup: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPUs' worth of time this process's cgroup may use (`cpu.max`, or v1's CFS quota); None if unlimited.

    >>> import tempfile; d = Path(tempfile.mkdtemp()); _ = (d / "cpu.max").write_text("150000 100000\\n")
    >>> cpu_quota(d)
    1.5
    """
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:  # cgroup v1
            quota = (cgroup / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (cgroup / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:  # "max": no limit
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota (as in a container).

    `os.cpu_count()` counts the host's cores, which a container or a `taskset` does not give this process.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, int(quota)))
    return max(1, cpus)


def cpu_ghz() -> float | None:
    """The clock rate in GHz: cpufreq's maximum where the kernel has it, else /proc/cpuinfo's current one."""
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e6
    except (OSError, ValueError):
        pass
    mhz = _cpuinfo().get("cpu MHz")
    try:
        return float(mhz) / 1e3 if mhz else None
    except ValueError:
        return None


def native_bf16() -> bool:
    """True where the CPU has bf16 arithmetic in hardware (AVX512-BF16 or AMX); else bf16 is emulated."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_vector_flags()))


def describe(device: torch.device) -> dict:
    """A JSON-able record of the machine: CPU, threads, torch, and the GPU and driver on CUDA."""
    info = {"cpu": cpu_name(), "cpu_vector": cpu_vector_flags(), "cpu_cores": os.cpu_count(),
            "cpus_usable": usable_cpus(),
            "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
            "gpu": None, "cuda": None, "driver": None}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda, driver=driver_version())
    return info


def label(info: dict) -> str:
    """One line naming the machine, for tables and READMEs.

    >>> label({"cpu": "AMD EPYC 7B13", "cpu_vector": ["avx2", "fma"], "cpu_threads": 2, "gpu": None,
    ...        "torch": "2.13.0"})
    'AMD EPYC 7B13 (avx2, fma), 2 threads, torch 2.13.0'
    """
    if info.get("gpu"):
        driver = f", driver {info['driver']}" if info.get("driver") else ""
        return f"{info['gpu']}{driver}, torch {info['torch']}"
    vector = ", ".join(info.get("cpu_vector") or []) or "no AVX2"
    threads = info["cpu_threads"]
    return f"{info['cpu']} ({vector}), {threads} thread{'s' if threads != 1 else ''}, torch {info['torch']}"

