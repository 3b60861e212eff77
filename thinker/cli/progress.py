"""Rich progress bars on stderr (stdout stays for JSON): one factory for training, bench and sweeps.

    >>> with training_progress(total=1000, label="copy") as logger:
    ...     logger.log({"train_loss": 0.5}, step=500)
"""

from __future__ import annotations

import contextlib
import threading

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

stderr = Console(stderr=True, soft_wrap=True, highlight=False)  # one line per message, however narrow


def progress_bar(unit: str = "", console: Console | None = None) -> Progress:
    """`label ━━━━ done/total UNIT  {extra}  0:00:12`: the one bar every command shows."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn(f"{unit}  {{task.fields[extra]}}"), TimeElapsedColumn(),
                    console=console or stderr)


class ProgressLogger:
    """A trainer logger that shows samples seen, the latest training loss and held-out exact match."""

    def __init__(self, progress: Progress, task_id, inner=None) -> None:
        self.progress, self.task_id, self.inner = progress, task_id, inner
        self.loss, self.exact_match = "-", "-"

    def log(self, metrics: dict[str, float], step: int) -> None:
        if "train_loss" in metrics:
            self.loss = f"{metrics['train_loss']:.4f}"
        if "eval_exact_match" in metrics:
            self.exact_match = f"{metrics['eval_exact_match']:.2%}"
        self.progress.update(self.task_id, completed=step, extra=f"loss {self.loss}  exact match {self.exact_match}")
        if self.inner is not None:
            self.inner.log(metrics, step)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


@contextlib.contextmanager
def training_progress(total: int, label: str, inner=None, console: Console | None = None):
    with progress_bar("samples", console) as progress:
        task_id = progress.add_task(label, total=total, extra="loss -  exact match -")
        yield ProgressLogger(progress, task_id, inner)


class Poller:
    """Calls `read()` every `seconds` on a daemon thread until the block ends (a last read included)."""

    def __init__(self, read, seconds: float = 1.0) -> None:
        self.read, self.seconds = read, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress-poller", daemon=True)

    def _loop(self) -> None:
        while True:
            try:
                self.read()
            except Exception:
                pass  # a busy database: try again next tick
            if self._stop.is_set():
                return
            self._stop.wait(self.seconds)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
