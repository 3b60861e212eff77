"""The servers a load benchmark runs against, on loopback: fresh databases on a PostgreSQL server, and an
MLflow tracking server on one of them with the database pool and worker count docker/.env.example
documents (as docker/compose.yaml runs it).

    >>> documented_settings()["MLFLOW_WORKERS"]
    '4'
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ENV = ROOT / "docker" / ".env.example"


def documented_settings(path: Path = DEFAULT_ENV) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] != "#")


def sql(url: str, *statements: str) -> list:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(url, autocommit=True) as db:
        results = [db.execute(s) for s in statements]
        return [r.fetchall() if s.lstrip().upper().startswith("SELECT") else None for r, s in zip(results, statements)]


def with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    return make_url(url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def mlflow_server(backend: str, folder: Path, settings: dict[str, str]):
    """`mlflow server` on a free loopback port, with the documented pool and workers; yields (url, process)."""
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": settings["MLFLOW_DB_POOL_SIZE"],
           "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": settings["MLFLOW_DB_MAX_OVERFLOW"]}
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(mlflow) if mlflow.exists() else "mlflow", "server", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", settings["MLFLOW_WORKERS"],
                             "--backend-store-uri", backend.replace("postgresql://", "postgresql+psycopg://", 1),
                             "--artifacts-destination", str(folder / "artifacts")],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(folder / "mlflow.log", "w"),
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "mlflow.log").read_text()[-500:]
                    raise RuntimeError(f"mlflow server did not start: {log}") from None
                time.sleep(0.5)
        yield url, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
