"""GPU utilisation, memory and power from NVML, sampled on a thread while the bench measures.

    monitor = GpuMonitor(torch.device("cuda"))
    monitor.start(); ...; monitor.stop()
    # {'gpu_util': 97.0, 'nvml_memory_mb': 1843.0, 'power_w': 412.5, 'sm_activity': 41.2, ...}

`gpu_util` is NVML's "a kernel was running" percentage: a launch-bound loop of tiny kernels can
read high there while most SMs idle. `sm_activity` (GPM metric SM_UTIL: share of SMs busy) and
`sm_occupancy` (active warps vs the maximum) tell those apart; GPM needs Hopper or newer and
a recent driver, and reads None where unsupported. pynvml (the nvidia-ml-py package) comes through
`thinker.nvml`, so the bench runs without it; without it every NVML field is None.
"""

from __future__ import annotations

import sys

import torch

from thinker.bench.monitors import INTERVAL_S, UsageMonitor
from thinker.nvml import load

_warned: set[str] = set()  # say why NVML is missing once per process, not once per variant


class GpuMonitor(UsageMonitor):
    def __init__(self, device: torch.device, interval: float = INTERVAL_S) -> None:
        super().__init__(interval)
        self.handle = None
        self._gpm_start = None
        self.nvml, self.error = load()
        if self.nvml is not None:
            try:
                self.handle = _handle(self.nvml, device)
            except Exception as e:  # a device NVML does not know: report, don't fail
                self.nvml, self.error = None, f"NVML has no handle for {device} ({type(e).__name__}: {e})"
        if self.error is not None:
            if self.error not in _warned:
                _warned.add(self.error)
                print(f"bench: {self.error}; GPU utilisation and power read None", file=sys.stderr)
        self.gpm = self.nvml is not None and _gpm_supported(self.nvml, self.handle)

    def read(self) -> dict[str, float | None]:
        if self.nvml is None:
            return {}
        nvml, h = self.nvml, self.handle
        return {"gpu_util": _try(lambda: float(nvml.nvmlDeviceGetUtilizationRates(h).gpu)),
                "nvml_memory_mb": _try(lambda: nvml.nvmlDeviceGetMemoryInfo(h).used / 2**20),
                "power_w": _try(lambda: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0)}  # milliwatts

    def start(self) -> None:
        self._gpm_start = self._gpm_sample()
        super().start()

    def stop(self) -> dict[str, float | None]:
        summary = super().stop()
        summary.update(self._gpm_metrics(self._gpm_start, self._gpm_sample()))
        self._gpm_start = None
        return summary

    def summary(self) -> dict[str, float | None]:
        util, memory, power = (self.column(k) for k in ("gpu_util", "nvml_memory_mb", "power_w"))
        return {"gpu_util": _mean(util), "nvml_memory_mb": max(memory) if memory else None,
                "power_w": _mean(power), "sm_activity": None, "sm_occupancy": None}

    # GPM: two samples bracketing the whole window give its average SM activity and occupancy.
    def _gpm_sample(self):
        if not self.gpm:
            return None
        try:
            sample = self.nvml.nvmlGpmSampleAlloc()
            self.nvml.nvmlGpmSampleGet(self.handle, sample)
            return sample
        except Exception:
            return None

    def _gpm_metrics(self, first, second) -> dict[str, float | None]:
        nvml = self.nvml
        if first is None or second is None:
            return {}
        try:
            request = nvml.c_nvmlGpmMetricsGet_t()
            request.version = nvml.NVML_GPM_METRICS_GET_VERSION
            request.numMetrics = 2
            request.sample1, request.sample2 = first, second
            request.metrics[0].metricId = nvml.NVML_GPM_METRIC_SM_UTIL
            request.metrics[1].metricId = nvml.NVML_GPM_METRIC_SM_OCCUPANCY
            nvml.nvmlGpmMetricsGet(request)
            values = [m.value if m.nvmlReturn == 0 else None for m in request.metrics[:2]]
            return {"sm_activity": values[0], "sm_occupancy": values[1]}
        except Exception:
            return {}
        finally:
            for sample in (first, second):
                _try(lambda s=sample: nvml.nvmlGpmSampleFree(s))


def _handle(nvml, device: torch.device):
    """NVML's handle for a torch device: by UUID, since CUDA_VISIBLE_DEVICES renumbers devices."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        return nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
    except Exception:
        return nvml.nvmlDeviceGetHandleByIndex(index)


def _gpm_supported(nvml, handle) -> bool:
    try:
        return bool(nvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
    except Exception:  # old driver, old nvidia-ml-py, or not Hopper+
        return False


def _try(read):
    try:
        return read()
    except Exception:  # one unsupported query (power on some boards) must not end the sampling
        return None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
