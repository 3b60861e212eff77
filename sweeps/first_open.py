"""Opening a store that other processes are creating at the same moment.

    storage = opened_together(lambda: RDBStorage(url))

Workers started together on an empty database (`docker compose ... up --scale worker=4`, a job
array, two `thinker worker` commands at once) each find no tables and create them: Optuna's and
MLflow's stores both do. One wins; the others fail with "duplicate key value violates unique
constraint" (PostgreSQL) or "table ... already exists" (SQLite), or, for MLflow, find the schema
half migrated. Those are worth waiting out: the winner finishes, and opening again finds its tables.
Any other error (a refused connection, bad credentials) is raised at once.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError

T = TypeVar("T")
WAIT_SECONDS = 120.0  # MLflow's migrations on an empty PostgreSQL database take seconds; allow for a slow one
_CREATED_BY_ANOTHER = re.compile(r"already exists|duplicate key|duplicate column|out-of-date database schema", re.I)


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


def opened_together(open_store: Callable[[], T], wait: float = WAIT_SECONDS) -> T:
    """`open_store()`, tried again for up to `wait` seconds while another process is creating the store."""
    deadline = time.monotonic() + wait
    delay = 0.2
    while True:
        try:
            return open_store()
        except Exception as e:
            if not created_by_another(e) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * random.uniform(1.0, 2.0))  # apart, so that the losers do not collide again
        delay = min(2 * delay, 3.0)
