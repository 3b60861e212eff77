"""The two stores a sweep writes to, by URL: Optuna's storage and MLflow's tracking store.

    >>> redact("postgresql://thinker:s3cret@db:5432/optuna")
    'postgresql://thinker:***@db:5432/optuna'
    >>> redact("sqlite:///optuna.db"), redact("journal:optuna.log")
    ('sqlite:///optuna.db', 'journal:optuna.log')
    >>> check_tracking("junk")
    Traceback (most recent call last):
    thinker.sweeps.stores.TrackingError: tracking URI 'junk' is not a URI (expected e.g. sqlite:///mlflow.db)

Which store a URL names, checked before it is opened and without importing Optuna or MLflow: a
malformed URL, a server that does not answer (MLflow's own retries would wait minutes), one database
named for both, or an SQLite file of the other kind (opened on it, each store adds its tables) is one
line at once. Passwords never reach a message, a log or a tag (`redact`).

Workers started together on an empty database (`docker compose ... up --scale worker=4`, a job
array, two `thinker worker` commands at once) each find no tables and create them: Optuna's and
MLflow's stores both do. One wins; the others fail with "duplicate key value violates unique
constraint" (PostgreSQL) or "table ... already exists" (SQLite), or, for MLflow, find the schema
half migrated. `opened_together` waits those out; any other error is raised at once.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError

from thinker.errors import ThinkerError

DEFAULT_STORAGE = "sqlite:///optuna.db"
JOURNAL = "journal:"
DEFAULT_DB = "mlflow.db"  # MLflow's default tracking store since 3.7: sqlite:///mlflow.db
DATABASE_SERVERS = ("postgresql", "mysql", "mssql")  # the database servers MLflow keeps runs in
CONNECT_SECONDS = 10
WAIT_SECONDS = 120.0  # MLflow's migrations on an empty PostgreSQL database take seconds; allow for a slow one
_CREATED_BY_ANOTHER = re.compile(r"already exists|duplicate key|duplicate column|out-of-date database schema", re.I)
T = TypeVar("T")


class StorageError(ThinkerError):
    """A storage URL that is malformed or cannot be reached (message has no password)."""


class TrackingError(ThinkerError):
    """The tracking store cannot be used (unreachable server, bad URI, unknown run)."""


def redact(url: str, text: str | None = None) -> str:
    """The URL with any password replaced by ***, safe to print, log or tag; or `text` (a driver's message,
    which may quote it) with that URL's password replaced."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # no URL with a password: a journal file, a word
        return url if text is None else text
    if text is None:
        return parsed.render_as_string(hide_password=True)
    return text.replace(str(parsed.password), "***") if parsed.password else text


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


def resolve_tracking_uri(uri: str | None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else MLflow's default store: mlflow.db in this directory."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    # MLflow's default store, spelled with an absolute path: MLflow caches stores by URI, so a
    # relative one would keep pointing at whichever directory first used it.
    return f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def check_tracking(uri: str, must_exist: bool = False) -> None:
    """Fail fast, writing nothing, when a tracking server does not answer, the URI is none, or an SQLite
    store is a file of another kind (an Optuna database would get MLflow's tables added); `must_exist`:
    a reader's store, which opening must not create."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
                if response.status == 200:
                    return
                raise TrackingError(f"tracking server {redact(uri)} answered {response.status} on /health")
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingError(f"tracking server {redact(uri)} is unreachable ({reason})") from None
    scheme = uri.split(":", 1)[0]
    if "://" not in uri and scheme not in ("databricks",):
        raise TrackingError(f"tracking URI {redact(uri)!r} is not a URI (expected e.g. sqlite:///mlflow.db)")
    path = sqlite_path(uri) if scheme == "sqlite" else None
    if path is not None:
        check_sqlite_store(path, uri, "tracking URI", must_exist, "experiments", "an MLflow store", TrackingError)
    elif scheme.split("+")[0] in DATABASE_SERVERS:
        _check_database_server(uri)


def _check_database_server(uri: str) -> None:
    """Connect once: MLflow's own retries would wait minutes for a server that refuses or does not exist."""
    import sqlalchemy  # noqa: PLC0415 - only for tracking stores in a database server

    connect_args = {"connect_timeout": CONNECT_SECONDS} if uri.startswith(("postgresql", "mysql")) else {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=connect_args)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as e:  # refused, unknown host, bad credentials, no such database, a missing driver
        raise TrackingError(database_error(e, uri, f"tracking URI {redact(uri)!r}",
                                           f"cannot use tracking store {redact(uri)}")) from None


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


def database_error(error: Exception, url: str, store: str, failed: str) -> str:
    """One line, without the password, on why the database at `url` could not be opened: `store` needs a driver
    that is not installed, or `failed` and the database driver's own first line (a refusal, bad credentials...)."""
    if isinstance(error, ModuleNotFoundError):
        return f"{store} needs the database driver {error.name!r} (pip install it)"
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{failed}: {redact(url, lines[0]) if lines else type(error).__name__}"


def created_by_another(error: BaseException) -> bool:
    """Whether `error` (or one it was raised from) says another process created the same tables first.

    >>> created_by_another(RuntimeError('relation "studies" already exists'))
    True
    >>> created_by_another(RuntimeError("connection refused"))
    False
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, IntegrityError) or _CREATED_BY_ANOTHER.search(str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def with_backoff(call: Callable[[], T], again: Callable[[Exception], bool], seconds: float = float("inf"),
                 first: float = 0.2, most: float = 3.0, tries: int | None = None) -> T:
    """`call()`, tried again while it raises an error that `again` accepts, `first` doubling to `most`
    seconds apart (jittered, so that processes that collided do not collide again), for up to `seconds`
    or `tries` calls; then the last error."""
    deadline, delay, tried = time.monotonic() + seconds, first, 0
    while True:
        try:
            tried += 1
            return call()
        except Exception as e:
            if not again(e) or time.monotonic() + delay > deadline or tried == tries:
                raise
        time.sleep(delay * random.uniform(1.0, 2.0))
        delay = min(2 * delay, most)


def opened_together(open_store: Callable[[], T], wait: float = WAIT_SECONDS) -> T:
    """`open_store()`, tried again for up to `wait` seconds while another process is creating the store."""
    return with_backoff(open_store, created_by_another, wait)
