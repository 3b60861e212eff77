"""The sweep's live view keeps drawing through reads that fail, and says so: `pytest tests/test_progress.py`."""

import io
import logging
import sqlite3
import threading

import pytest
from rich.console import Console

from thinker.cli.progress import Poller
from thinker.sweeps.logs import route_library_logs, start_log_file

# the loggers a sweep's log routing may reconfigure (the root logger, and those of the libraries it quiets)
ROUTED = ("", "optuna", "mlflow", "alembic", "sqlalchemy", "sqlalchemy.engine", "py.warnings", "urllib3", "huey")


@pytest.fixture
def sweep_log(tmp_path, monkeypatch):
    """The sweep's log file, set up as `thinker sweep` sets it up; the loggers put back as they were after."""
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate) for name in ROUTED}
    monkeypatch.delenv("MLFLOW_CONFIGURE_LOGGING", raising=False)  # put back after, if the routing sets it
    path = tmp_path / "sweep.log"
    route_library_logs(path, started=False)
    start_log_file()
    yield path
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:], logger.propagate = handlers, propagate
        logger.setLevel(level)


def test_a_failed_read_is_logged_to_the_sweep_log_and_shown_as_one_dim_line(sweep_log):
    calls, done = [], threading.Event()

    def read():  # the storage is locked for three reads, then readable
        calls.append(1)
        if len(calls) <= 3:
            raise sqlite3.OperationalError("database is locked")
        done.set()

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, color_system="standard", width=200)
    with Poller(read, seconds=0.01, console=console):
        assert done.wait(10)
    shown = screen.getvalue().splitlines()
    assert shown == ["\x1b[2mlive view: could not read (OperationalError: database is locked); trying again\x1b[0m"]
    log = sweep_log.read_text()
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, log  # three failed reads in a row: one record, with the traceback under it
    assert "the live view could not read what it shows (OperationalError: database is locked)" in warnings[0]
    assert 'raise sqlite3.OperationalError("database is locked")' in log
    assert "the live view reads again, after 3 failed reads" in log
