"""Where the trainer sends metrics: a two-method interface with a do-nothing default.

    >>> logger = NullLogger()
    >>> logger.log({"loss": 0.5}, step=1024)
    >>> logger.close()

The trainer knows only this interface; MLflow and the progress bar plug in from outside.
"""

from __future__ import annotations

from typing import Protocol


class Logger(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record metrics at `step` (samples seen)."""

    def close(self) -> None:
        """Flush whatever is buffered."""


class NullLogger:
    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def close(self) -> None:
        pass


class MemoryLogger:
    """Keeps every record in a list: handy in tests and notebooks.

    >>> m = MemoryLogger(); m.log({"loss": 1.0}, step=8); m.records
    [(8, {'loss': 1.0})]
    """

    def __init__(self) -> None:
        self.records: list[tuple[int, dict[str, float]]] = []

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.records.append((step, dict(metrics)))

    def close(self) -> None:
        pass

    def series(self, name: str) -> list[tuple[int, float]]:
        return [(step, m[name]) for step, m in self.records if name in m]
