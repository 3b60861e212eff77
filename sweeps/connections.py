"""Database connections at scale: how many a sweep holds, waiting for one, and a plan that cannot fit.

    >>> refused(RuntimeError("FATAL:  sorry, too many clients already"))
    True
    >>> refused(RuntimeError('relation "studies" does not exist'))
    False
    >>> needed(workers=128)
    129

A worker process keeps one connection to Optuna's database: its storage's pool holds one, shared by
the trial loop and the heartbeat thread, and opens a second only while both need one at once
(`POOL`); the coordinator keeps one more. PostgreSQL refuses
connections past `max_connections` ("sorry, too many clients already"); a worker that meets that
waits (`wait_for_connections`: backoff, for `THINKER_CONNECT_PATIENCE` seconds) rather than dying at
once; a server that is not there at all is still reported at once. Before any worker starts,
`check_plan` asks the server how many connections it allows and refuses, in one line, a plan that
cannot fit. Behind a pooler (PgBouncer in
transaction mode, as docker/compose.yaml runs it) the server's limit is the pooler's business: the
check is skipped, and psycopg's prepared statements, which such a pooler cannot keep, are turned off.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from thinker.errors import ThinkerError, one_line
from thinker.sweeps.stores import with_backoff

PATIENCE_SECONDS = 120  # THINKER_CONNECT_PATIENCE overrides: how long a refused connection is tried again
# storage pool per worker process: one connection kept, shared by the trial loop and the heartbeat thread,
# and one more while both need one at once (closed when given back): Optuna's own start nests two
POOL = {"pool_size": 1, "max_overflow": 1, "pool_timeout": 120, "pool_pre_ping": True}
# a server (or pooler) that is there but full: worth waiting for; an unreachable one is reported at once
_REFUSED = re.compile(r"too many clients|remaining connection slots|connection slots are reserved|"
                      r"no more connections allowed", re.I)


class ConnectionPlanError(ThinkerError):
    """The workers planned would need more database connections than the server allows."""


def refused(error: BaseException) -> bool:
    """Whether `error` says the server refused a connection for now: all its connection slots are taken."""
    return bool(_REFUSED.search(str(error)))


def patience() -> float:
    value = os.environ.get("THINKER_CONNECT_PATIENCE", "").strip()
    return float(value) if value.replace(".", "", 1).isdecimal() else PATIENCE_SECONDS


_installed = False


def wait_for_connections() -> None:
    """Make every SQLAlchemy engine of this process try a refused connection again, with jittered backoff
    (0.2 s doubling to 5 s) for `patience()` seconds, before the error reaches the caller. Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True

    @event.listens_for(Engine, "do_connect")
    def _patiently(dialect, connection_record, cargs, cparams):
        return with_backoff(lambda: dialect.connect(*cargs, **cparams), refused, patience(), most=5.0)


def engine_options(url: str) -> dict:
    """SQLAlchemy engine options for Optuna's storage on a database server: one pooled connection, a
    connect timeout, and no server-side prepared statements (a transaction-mode pooler cannot keep them).

    >>> engine_options("postgresql://u@db/optuna")["connect_args"]
    {'connect_timeout': 10, 'prepare_threshold': None}
    >>> engine_options("mysql+pymysql://u@db/optuna")["connect_args"], engine_options("mysql://u@db/o")["pool_size"]
    ({'connect_timeout': 10}, 1)
    """
    parsed = make_url(url)
    connect_args: dict = {"connect_timeout": 10}
    if parsed.get_backend_name() == "postgresql" and parsed.get_dialect().driver == "psycopg":
        connect_args["prepare_threshold"] = None
    return {**POOL, "connect_args": connect_args}


def needed(workers: int) -> int:
    """Connections to Optuna's database: one per worker process, one for the coordinator."""
    return workers + 1


@dataclass
class ServerLimits:
    max_connections: int
    reserved: int  # superuser_reserved_connections (and reserved_connections, PostgreSQL 16+)
    in_use: int
    pooled: bool  # a pooler answered, not the server itself

    @property
    def free(self) -> int:
        return self.max_connections - self.reserved - self.in_use


def server_limits(url: str) -> ServerLimits | None:
    """What a PostgreSQL server at `url` allows and has in use now; None for other databases. Behind a pooler
    the server process that answers is not the one the client was told of: its pid differs."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "postgresql":
        return None
    import sqlalchemy  # noqa: PLC0415
    from sqlalchemy.pool import NullPool  # noqa: PLC0415

    engine = sqlalchemy.create_engine(url, poolclass=NullPool, **{"connect_args": engine_options(url)["connect_args"]})
    try:
        with engine.connect() as db:
            told = getattr(db.connection.dbapi_connection, "info", None)
            told_pid = getattr(told, "backend_pid", None)
            server_pid = db.execute(text("SELECT pg_backend_pid()")).scalar()
            settings = dict(db.execute(text(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('max_connections', 'superuser_reserved_connections', 'reserved_connections')")).all())
            in_use = db.execute(text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
                                ).scalar()
    finally:
        engine.dispose()
    reserved = int(settings.get("superuser_reserved_connections", 3)) + int(settings.get("reserved_connections", 0))
    return ServerLimits(int(settings["max_connections"]), reserved, int(in_use) - 1,  # less this check's own
                        pooled=told_pid is not None and told_pid != server_pid)


def check_plan(url: str, workers: int, where: str) -> str | None:
    """ConnectionPlanError, before any worker starts, when `workers` processes need more connections to the
    PostgreSQL server at `url` than it has free; else a line saying what the plan uses (None: not a server)."""
    try:
        limits = server_limits(url)
    except Exception as e:  # noqa: BLE001 - unreachable, bad credentials: the storage's opener says so
        if refused(e):
            raise ConnectionPlanError(f"PostgreSQL at {where} has no connection free now ({one_line(e, 120)}); "
                                      f"{workers} workers need {needed(workers)}") from None
        return None
    if limits is None:
        return None
    want = needed(workers)
    if limits.pooled:
        return f"connections: {want} to a pooler in front of PostgreSQL (it holds the server's)"
    if want > limits.free:
        raise ConnectionPlanError(
            f"{workers} workers need {want} connections to PostgreSQL at {where}, which allows "
            f"{limits.max_connections} ({limits.reserved} reserved, {limits.in_use} in use): put PgBouncer in front "
            f"(docker/compose.yaml does; docs/scale-out.md), raise max_connections, or start at most "
            f"{max(limits.free - 1, 0)} workers (--trials-per-device or --jobs)")
    return f"connections: {want} of PostgreSQL's {limits.free} free"
