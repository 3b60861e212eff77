"""Optuna storage: URL checks, password redaction, heartbeats and retries on RDB storages.

    >>> redact("postgresql://thinker:s3cret@db:5432/optuna")
    'postgresql://thinker:***@db:5432/optuna'
    >>> redact("sqlite:///optuna.db")
    'sqlite:///optuna.db'

The default is an SQLite file in the working directory. Any SQLAlchemy URL Optuna's RDB storage
accepts works too (PostgreSQL for many machines). Every RDB storage gets heartbeats, so a trial whose
worker died is failed after the grace period and retried by `RetryHeartbeatStaleTrialCallback`.
`journal:PATH` is Optuna's journal file, the storage it recommends for many processes on one machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from thinker.errors import ThinkerError, one_line
from thinker.sweeps.first_open import opened_together

DEFAULT_STORAGE = "sqlite:///optuna.db"
JOURNAL = "journal:"
HEARTBEAT_SECONDS = 10  # THINKER_HEARTBEAT_SECONDS overrides
GRACE_SECONDS = 30  # THINKER_GRACE_SECONDS overrides: silence after which a running trial is dead
MAX_RETRY = 2
_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@]*:)(?P<password>[^@]*)(?P<tail>@)")


class StorageError(ThinkerError):
    """A storage URL that is malformed or cannot be reached (message has no password)."""


def redact(url: str) -> str:
    """The URL with any password replaced by ***, safe to print, log or tag."""
    return _PASSWORD.sub(lambda m: f"{m['head']}***{m['tail']}", url)


def journal_path(url: str) -> Path | None:
    """The file of a `journal:PATH` storage, else None.

    >>> journal_path("journal:runs/optuna.log")
    PosixPath('runs/optuna.log')
    """
    return Path(url.removeprefix(JOURNAL)) if url.startswith(JOURNAL) else None


def check_url(url: str) -> str:
    """Parse the URL without connecting; StorageError names what is wrong."""
    if url.startswith(JOURNAL):
        if not url.removeprefix(JOURNAL):
            raise StorageError(f"storage {url!r}: a journal storage needs a file, e.g. journal:optuna.log")
        return url

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise StorageError(f"malformed storage URL {redact(url)!r} (expected e.g. {DEFAULT_STORAGE} "
                           "or postgresql://user@host/db)") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StorageError(f"storage {redact(url)!r}: an SQLite storage needs a file, e.g. {DEFAULT_STORAGE}")
    return url


def same_database(storage: str, tracking: str) -> bool:
    """Whether an Optuna storage URL and an MLflow tracking URI name one database: each store keeps an
    `alembic_version` table of its own revisions, so the second to open it would fail.

    >>> same_database("postgresql://u:pw@db/optuna", "postgresql+psycopg://u@db:5432/optuna")
    True
    >>> same_database("sqlite:///runs.db", "sqlite:///mlflow.db"), same_database("sqlite:///a.db", "http://host:5000")
    (False, False)
    """
    def where(url: str):
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):
            return None  # not an SQLAlchemy URL: a journal file, an MLflow server
        if parsed.get_backend_name() == "sqlite":
            return "sqlite", str(Path(parsed.database or "").resolve())
        default_port = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}
        return (parsed.get_backend_name(), parsed.host, parsed.port or default_port.get(parsed.get_backend_name()),
                parsed.database)

    a = None if storage.startswith(JOURNAL) else where(storage)
    return a is not None and a == where(tracking)


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL, else None."""

    if url.startswith(JOURNAL):
        return None
    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" else None


def sqlite_tables(path: Path) -> set[str] | None:
    """The tables of an existing SQLite file, or None if the file is no SQLite database (a PNG, a CSV)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError:
        return None


def check_sqlite_store(path: Path, url: str, what: str, must_exist: bool, table: str, kind: str,
                       error: type[ThinkerError]) -> None:
    """`error` if the SQLite file of `url` is missing where it `must_exist`, or is not a `kind` database."""
    if must_exist and not path.exists():
        raise error(f"no {kind.removeprefix('an ')} at {path} ({what} {url})")
    wrong = check_sqlite_kind(path, table, kind)
    if wrong:
        raise error(f"{what} {url}: {wrong}")


def check_sqlite_kind(path: Path, table: str, kind: str) -> str | None:
    """Why an existing file at `path` is not a `kind` database (one with `table`), or None if it is one or
    holds no table yet: a store opened on another's file would add its own tables to it."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    tables = sqlite_tables(path)
    if tables is None:
        return f"{path} is not an SQLite database"
    if tables and table not in tables:
        holds = "MLflow's runs" if "experiments" in tables else "Optuna's studies" if "studies" in tables else \
            "other tables"
        return f"{path} is not {kind} (it holds {holds})"
    return None


def env_seconds(name: str, default: int) -> int:
    """A whole number of seconds from the environment variable `name` (unset: `default`)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdecimal():
        raise StorageError(f"{name} must be a whole number of seconds, got {text!r}")
    return int(text)


def open_storage(url: str, heartbeat: bool = True, must_exist: bool = False):
    """An RDBStorage with heartbeats and retries; StorageError if it cannot be opened.

    `must_exist` refuses to create a new SQLite file (for commands that only read a study).
    """
    # Heartbeats are "experimental since v2.8": stable for years, and Optuna's advised way to detect
    # dead workers. Say so once here rather than warn on every worker start.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    check_url(url)
    journal = journal_path(url)
    if journal is not None:
        if must_exist and not journal.exists():
            raise StorageError(f"no study journal at {journal} (storage {url})")

        try:
            return JournalStorage(JournalFileBackend(str(journal)))
        except (OSError, ValueError) as e:  # ValueError: a file that is no journal (UnicodeDecodeError, JSON)
            raise StorageError(f"cannot open storage {url!r}: {one_line(e, 200)}") from None
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_store(path, url, "storage", must_exist, "studies", "an Optuna study database", StorageError)
        # SQLite serialises writers; wait for the lock instead of failing with "database is locked".
        engine_kwargs = {"connect_args": {"timeout": 120}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    beats = {}
    if heartbeat:
        beats = dict(heartbeat_interval=env_seconds("THINKER_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS),
                     grace_period=env_seconds("THINKER_GRACE_SECONDS", GRACE_SECONDS),
                     heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
    try:
        return opened_together(lambda: RDBStorage(url, engine_kwargs=engine_kwargs, **beats))
    except Exception as e:  # sqlalchemy OperationalError and friends: unreachable, refused, bad auth
        raise StorageError(database_error(e, f"storage {redact(url)!r}", f"cannot open storage {redact(url)!r}")) \
            from None


def database_error(error: Exception, store: str, failed: str) -> str:
    """One line, passwords redacted, on why a database could not be opened: `store` needs a driver that is not
    installed, or `failed` and the database driver's own first line (a refusal, bad credentials, no database)."""
    if isinstance(error, ModuleNotFoundError):
        return f"{store} needs the database driver {error.name!r} (pip install it)"
    if isinstance(error, optuna.exceptions.StorageInternalError) and error.__cause__ is not None:
        error = error.__cause__
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{failed}: {redact(lines[0]) if lines else type(error).__name__}"
