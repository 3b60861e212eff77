"""Usage monitors for the measured window: a thread reads the machine every ~100 ms.

    >>> monitor = CpuMonitor()
    >>> monitor.start()
    >>> summary = monitor.stop()
    >>> sorted(summary)
    ['cpu_percent', 'rss_mb', 'system_cpu_percent']

`CpuMonitor` reads the process through psutil; `bench.nvml.GpuMonitor` reads the GPU through NVML.
"""

from __future__ import annotations

import threading

import psutil

INTERVAL_S = 0.1


class UsageMonitor:
    """Calls `read()` every `interval` seconds on a daemon thread between `start()` and `stop()`.

    Reads once at each end too, so even a window shorter than the interval has samples.
    """

    def __init__(self, interval: float = INTERVAL_S) -> None:
        self.interval = interval
        self.samples: list[dict[str, float | None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> dict[str, float | None]:
        raise NotImplementedError

    def summary(self) -> dict[str, float | None]:
        raise NotImplementedError

    def start(self) -> None:
        self.samples = [self.read()]
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="bench-monitor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(self.read())

    def stop(self) -> dict[str, float | None]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.samples.append(self.read())
        return self.summary()

    def column(self, key: str) -> list[float]:
        return [s[key] for s in self.samples if s.get(key) is not None]


class CpuMonitor(UsageMonitor):
    """Process CPU% over the window (100 = one core busy), the whole machine's CPU% (100 = every core
    busy: well above the process's share means other work competed) and the largest resident set seen.
    """

    def __init__(self, interval: float = INTERVAL_S) -> None:
        super().__init__(interval)
        self.process = psutil.Process()

    def start(self) -> None:
        self.process.cpu_percent(None)  # the next call reports the average since this one
        psutil.cpu_percent(None)
        super().start()

    def read(self) -> dict[str, float | None]:
        return {"rss_mb": self.process.memory_info().rss / 2**20}

    def summary(self) -> dict[str, float | None]:
        return {"cpu_percent": self.process.cpu_percent(None), "system_cpu_percent": psutil.cpu_percent(None),
                "rss_mb": max(self.column("rss_mb"))}

