"""Per-phase timing of training steps without a synchronisation per step.

    >>> timer = PhaseTimer(torch.device("cpu"))
    >>> timer.start(); timer.mark(); timer.mark(); timer.mark()
    >>> [sorted(row) for row in timer.collect()]
    [['backward', 'data', 'forward', 'step']]

Every step is split into data, forward+loss and backward+optimizer. On CUDA the boundaries are
events recorded in the stream and read once per `collect()` (one sync for many steps); on CPU they
are `perf_counter` readings. The three phases add up to the step because the step is measured
between the same first and last marks.
"""

from __future__ import annotations

import time

import torch

PHASES = ("data", "forward", "backward")


class PhaseTimer:
    """Marks phase boundaries; `collect()` turns them into per-step milliseconds."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._steps: list[list] = []

    def _now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def start(self) -> None:
        self._steps.append([self._now()])

    def mark(self) -> None:
        self._steps[-1].append(self._now())

    def collect(self) -> list[dict[str, float]]:
        """Per-step {data, forward, backward, step} in ms for every finished step since the last call."""
        done = [marks for marks in self._steps if len(marks) == len(PHASES) + 1]
        self._steps = [marks for marks in self._steps if len(marks) != len(PHASES) + 1]
        if not done:
            return []
        if self.cuda:
            done[-1][-1].synchronize()  # the one sync: every earlier event has completed too
            elapsed = lambda a, b: a.elapsed_time(b)  # noqa: E731
        else:
            elapsed = lambda a, b: (b - a) * 1000.0  # noqa: E731
        rows = []
        for marks in done:
            row = {phase: elapsed(marks[i], marks[i + 1]) for i, phase in enumerate(PHASES)}
            row["step"] = elapsed(marks[0], marks[-1])
            rows.append(row)
        return rows


def mean_phases(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean milliseconds per phase and per step over `rows` (means add up; medians would not)."""
    return {key: sum(r[key] for r in rows) / max(len(rows), 1) for key in (*PHASES, "step")}
