"""Library chatter (MLflow, Optuna, Alembic, SQLAlchemy, Python warnings) to a log file, not the terminal.

    route_library_logs(Path("runs/sweep-addition-20261128-2300/sweep.log"), verbose=False)

A sweep draws a live view on the terminal; a line from MLflow or a warning from Optuna landing in the
middle of it would tear it. Every process of a sweep (the coordinator and each worker) has the
libraries' records propagate to the root logger, as each library offers (Optuna's `optuna.logging`,
MLflow's MLFLOW_CONFIGURE_LOGGING), and the root logger writes them here; `-v` copies them to stderr
too. What the user must see still reaches them: the sweep reports failures in its own one-line form.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import optuna

FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
QUIET = ("sqlalchemy", "alembic", "urllib3")  # kept at WARNING: SQLAlchemy at INFO would log every statement
MLFLOW_LOGGERS = ("mlflow", "alembic", "sqlalchemy.engine", "huey")  # those MLflow configures when imported
_installed: list[logging.Handler] = []  # on the root logger, by the last call in this process


def route_library_logs(path: Path | None, verbose: bool = False, started: bool = True) -> None:
    """Send the libraries' log records and Python warnings to `path` (and to stderr when `verbose`).

    With `started=False` records wait in memory until `start_log_file()`: a sweep refused at the
    start (an unreachable database, say) leaves no file behind.
    """
    root = logging.getLogger()
    for handler in _installed:  # an earlier sweep's, in this same process
        root.removeHandler(handler)
        handler.close()
    _installed[:] = [_LogFile(path, started)] if path is not None else []
    if verbose:
        _installed.append(logging.StreamHandler(sys.stderr))
    for handler in _installed:
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"  # for the processes that import MLflow from now on (workers)
    for name in MLFLOW_LOGGERS:  # and here, where it may be imported already: its handlers write to stderr
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.captureWarnings(True)
    warnings.simplefilter("default")  # each warning once per place, into the log


def start_log_file() -> None:
    """The sweep has started: write what waited, and from now on every record, to the log file."""
    for handler in _installed:
        if isinstance(handler, _LogFile):
            handler.start()


class _LogFile(logging.FileHandler):
    """A log file created (folder and all) only once the sweep has started."""

    def __init__(self, path: Path, started: bool) -> None:
        super().__init__(path, encoding="utf-8", delay=True)
        self.started, self.waiting = started, []

    def emit(self, record: logging.LogRecord) -> None:
        if self.started:
            super().emit(record)
        elif len(self.waiting) < 10_000:
            self.waiting.append(record)

    def start(self) -> None:
        self.started = True
        for record in self.waiting:
            super().emit(record)
        self.waiting.clear()

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()
