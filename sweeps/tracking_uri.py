"""Which MLflow store a command talks to, checked before it is opened: no MLflow import here.

    >>> check_tracking("junk")
    Traceback (most recent call last):
    thinker.sweeps.tracking_uri.TrackingError: tracking URI 'junk' is not a URI (expected e.g. sqlite:///mlflow.db)
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from thinker.errors import ThinkerError
from thinker.sweeps.storage import check_sqlite_store, database_error, redact, sqlite_path

DEFAULT_DB = "mlflow.db"  # MLflow's default tracking store since 3.7: sqlite:///mlflow.db


class TrackingError(ThinkerError):
    """The tracking store cannot be used (unreachable server, bad URI, unknown run)."""


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
        check_database_server(uri)


DATABASE_SERVERS = ("postgresql", "mysql", "mssql")  # the database servers MLflow keeps runs in
CONNECT_SECONDS = 10


def check_database_server(uri: str) -> None:
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
        raise TrackingError(database_error(e, f"tracking URI {redact(uri)!r}", f"cannot use tracking store "
                                                                               f"{redact(uri)}")) from None
