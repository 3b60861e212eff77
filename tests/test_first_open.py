"""Stores that several processes create at the same moment: `pytest tests/test_first_open.py`.

The PostgreSQL case (workers of `docker compose ... --scale worker=4`) is in tests/test_scale.py.
"""

import threading

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from thinker.sweeps import stores
from thinker.sweeps.stores import opened_together
from thinker.sweeps.study import open_storage


def at_once(n: int, open_one) -> list[str]:
    """Run `open_one` in `n` threads released together; what each ended with ("ok" or the error)."""
    barrier, ended = threading.Barrier(n), []

    def run():
        barrier.wait()
        try:
            open_one()
            ended.append("ok")
        except Exception as e:
            ended.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ended


def test_sweeps_starting_together_on_a_new_sqlite_file_all_open_it(tmp_path):
    # Before: all but one failed with "table studies already exists" in 9 rounds of 10.
    for round_ in range(3):
        url = f"sqlite:///{tmp_path}/optuna-{round_}.db"
        assert at_once(4, lambda url=url: open_storage(url).engine.dispose()) == ["ok"] * 4


class Flaky:
    """Fails with `error` the first `failures` calls, then returns "opened"."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "opened"


def duplicate() -> IntegrityError:
    return IntegrityError("CREATE TABLE studies", {}, Exception('duplicate key value violates unique constraint '
                                                               '"pg_type_typname_nsp_index"'))


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(stores.time, "sleep", lambda seconds: None)


def test_a_store_another_process_is_creating_is_opened_once_it_is_there():
    store = Flaky(duplicate(), failures=3)
    assert opened_together(store) == "opened" and store.calls == 4


def test_any_other_error_is_raised_at_once():
    store = Flaky(OperationalError("connect", {}, Exception("connection refused")), failures=1)
    with pytest.raises(OperationalError):
        opened_together(store)
    assert store.calls == 1


def test_it_gives_up_after_the_wait():
    store = Flaky(duplicate(), failures=10**6)
    with pytest.raises(IntegrityError):
        opened_together(store, wait=0.0)
    assert store.calls == 1
