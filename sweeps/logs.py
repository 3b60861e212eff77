"""Library chatter (MLflow, Optuna, Alembic, SQLAlchemy, Python warnings) to a log file, not the terminal.

    route_library_logs(Path("runs/sweep-addition-20261128-2300/sweep.log"), verbose=False)

A sweep draws a live view on the terminal; a line from MLflow or a warning from Optuna landing in the
middle of it would tear it. Every process of a sweep (the coordinator and each worker) sends those
loggers here; `-v` copies them to stderr too. What the user must see still reaches them: the sweep
reports failures in its own one-line form.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

# logger -> the level kept (SQLAlchemy at INFO would log every statement)
LIBRARY_LOGGERS = {"mlflow": logging.INFO, "optuna": logging.INFO, "alembic": logging.WARNING,
                   "sqlalchemy": logging.WARNING, "py.warnings": logging.WARNING, "urllib3": logging.WARNING}
FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def route_library_logs(path: Path | None, verbose: bool = False, started: bool = True) -> None:
    """Send the libraries' log records and Python warnings to `path` (and to stderr when `verbose`).

    With `started=False` records wait in memory until `start_log_file()`: a sweep refused at the
    start (an unreachable database, say) leaves no file behind.
    """
    handlers: list[logging.Handler] = []
    if path is not None:
        handlers.append(_LogFile(path, started))
    if verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
    logging.captureWarnings(True)
    warnings.simplefilter("default")  # each warning once per place, into the log
    for name, level in LIBRARY_LOGGERS.items():
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):  # MLflow and Optuna install their own stderr handlers
            logger.removeHandler(handler)
            if isinstance(handler, _LogFile):  # an earlier sweep's file, in this same process
                handler.close()
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def start_log_file() -> None:
    """The sweep has started: write what waited, and from now on every record, to the log file."""
    for handler in {h for name in LIBRARY_LOGGERS for h in logging.getLogger(name).handlers}:
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
