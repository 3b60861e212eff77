"""A Rich progress bar on stderr that doubles as a trainer logger (stdout stays for JSON).

    >>> with training_progress(total=1000, label="copy") as logger:
    ...     logger.log({"train_loss": 0.5}, step=500)
"""

from __future__ import annotations

import contextlib

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

stderr = Console(stderr=True)


class ProgressLogger:
    """Shows samples seen, the latest training loss and held-out exact match."""

    def __init__(self, progress: Progress, task_id, inner=None) -> None:
        self.progress, self.task_id, self.inner = progress, task_id, inner
        self.fields = {"loss": "-", "em": "-"}

    def log(self, metrics: dict[str, float], step: int) -> None:
        if "train_loss" in metrics:
            self.fields["loss"] = f"{metrics['train_loss']:.4f}"
        if "eval_exact_match" in metrics:
            self.fields["em"] = f"{metrics['eval_exact_match']:.2%}"
        self.progress.update(self.task_id, completed=step, **self.fields)
        if self.inner is not None:
            self.inner.log(metrics, step)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


@contextlib.contextmanager
def training_progress(total: int, label: str, inner=None, console: Console | None = None):
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("samples  loss {task.fields[loss]}  exact match {task.fields[em]}"),
        TimeElapsedColumn(),
        console=console or stderr,
        transient=False,
    )
    with progress:
        task_id = progress.add_task(label, total=total, loss="-", em="-")
        yield ProgressLogger(progress, task_id, inner)
