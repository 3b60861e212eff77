"""Rich progress bars on stderr (stdout stays for JSON): one factory for training, bench and sweeps.

    >>> with training_progress(total=1000, label="copy") as logger:
    ...     logger.log({"train_loss": 0.5}, step=500)
"""

from __future__ import annotations

import contextlib
import logging
import threading

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from thinker.errors import one_line

stderr = Console(stderr=True, soft_wrap=True, highlight=False)  # one line per message, however narrow
# The live view polls the Optuna storage; under `optuna`, its failed reads reach the sweep's log file
# (thinker.sweeps.logs routes that logger there) and never the terminal the view is drawn on.
POLL_LOG = logging.getLogger("optuna.thinker.live_view")


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
    """Calls `read()` every `seconds` on a daemon thread until the block ends (a last read included).

    A read that fails (a busy database, say) is tried again next tick. The first failure of a run of them,
    or one that fails otherwise than the last, is logged with its traceback (`POLL_LOG`) and shown as one
    dim line on `console`; a read that works again after failures is logged too.
    """

    def __init__(self, read, seconds: float = 1.0, console: Console | None = None) -> None:
        self.read, self.seconds, self.console = read, seconds, console or stderr
        self.failing: str | None = None  # the last failure, while reads keep failing
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress-poller", daemon=True)

    def _loop(self) -> None:
        while True:
            self.poll()
            if self._stop.is_set():
                return
            self._stop.wait(self.seconds)

    def poll(self) -> None:
        """One read; a failure is reported, not raised."""
        try:
            self.read()
        except Exception as e:  # noqa: BLE001 - whatever the read raises, the view goes on and reads again
            self.failures += 1
            if one_line(e) != self.failing:
                self.failing = one_line(e)
                POLL_LOG.warning("the live view could not read what it shows (%s); trying again every %gs",
                                 self.failing, self.seconds, exc_info=True)
                self.console.print(Text(f"live view: could not read ({self.failing}); trying again", style="dim"))
            return
        if self.failing is not None:
            POLL_LOG.info("the live view reads again, after %d failed reads", self.failures)
        self.failing, self.failures = None, 0

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
