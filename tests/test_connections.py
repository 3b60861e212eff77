"""Connections at scale: a plan that cannot fit is refused before any worker starts, a full server is waited
for, and a busy tracking store loses no metric point without counting it.

    eval "$(bash .ci/postgres.sh)" && pytest tests/test_connections.py   # the PostgreSQL and PgBouncer tests too
"""

import os
import threading
import time

import pytest

import thinker.sweeps.connections as connections
import thinker.sweeps.tracking as tracking
from tests.sweep_support import in_tmp, runner  # noqa: F401
from thinker.cli import app
from thinker.sweeps.connections import ConnectionPlanError, ServerLimits, check_plan, server_limits
from thinker.sweeps.study import open_storage

PG = os.environ.get("THINKER_TEST_POSTGRES")
POOLER = os.environ.get("THINKER_TEST_PGBOUNCER")
needs_pg = pytest.mark.skipif(not PG or not POOLER, reason="no test PostgreSQL and PgBouncer "
                              "(eval \"$(bash .ci/postgres.sh)\")")


def test_a_plan_past_max_connections_is_one_line_before_any_worker_starts(monkeypatch, tmp_path):
    monkeypatch.setattr(connections, "server_limits", lambda url: ServerLimits(12, 3, 4, pooled=False))
    result = runner.invoke(app, ["sweep", "copy", "--jobs", "5", "--storage", "postgresql://u:pw@db:5432/optuna",
                                 "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "thinker: error: 5 workers need 6 connections to PostgreSQL at postgresql://u:***@db:5432/optuna, which "
        "allows 12 (3 reserved, 4 in use): put PgBouncer in front (docker/compose.yaml does; docs/scale-out.md), "
        "raise max_connections, or start at most 4 workers (--trials-per-device or --jobs)")
    assert not (tmp_path / "mlflow.db").exists() and not os.path.exists("runs")


def test_behind_a_pooler_the_servers_limit_is_not_the_plans():
    original = connections.server_limits
    try:
        connections.server_limits = {"x": ServerLimits(100, 3, 20, pooled=True)}.get
        line = check_plan("x", 256, "db")
        assert line == "connections: 257 to a pooler in front of PostgreSQL (it holds the server's)"
        connections.server_limits = lambda url: ServerLimits(100, 3, 20, pooled=False)
        with pytest.raises(ConnectionPlanError, match="start at most 76 workers"):
            check_plan("x", 128, "db")
        assert check_plan("x", 8, "db") == "connections: 9 of PostgreSQL's 77 free"
    finally:
        connections.server_limits = original
    assert check_plan("sqlite:///optuna.db", 500, "here") is None  # no server, no limit


class FlakyClient:
    """An MLflow client whose log_batch fails `failures` times first (a saturated server), counting points."""

    def __init__(self, failures: int) -> None:
        self.failures, self.points = failures, 0

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        if self.failures:
            self.failures -= 1
            raise RuntimeError("BAD_REQUEST: QueuePool limit of size 5 overflow 10 reached, connection timed out")
        self.points += len(metrics)

    def set_terminated(self, run_id, status):
        self.status = status


def trial_run(client, tmp_path):
    tracker = type("T", (), {"client": client, "uri": f"sqlite:///{tmp_path}/none.db"})()
    tracker.end = lambda run_id, status, tags: setattr(client, "tags", tags)
    return tracking.TrialRun(tracker, "0123456789abcdef")


def test_metric_batches_are_retried_then_kept_and_sent_at_the_end(monkeypatch, tmp_path):
    monkeypatch.setattr(tracking, "FIRST_DELAY", 0.001)
    monkeypatch.setattr(tracking, "_start_system_metrics", lambda run_id, uri: False)
    client = FlakyClient(failures=tracking.TRIES + 2)  # the first batch fails every try, then two more tries
    run = trial_run(client, tmp_path)
    for step in range(1, 4):
        run.log({"loss": 1.0 / step, "eval_exact_match": 0.5}, step)
    run.finish("COMPLETE")
    assert client.points == 6 and run.sent == 6 and run.unsent == 0  # nothing lost: the kept batch went later
    assert "QueuePool limit" in client.tags["logging_errors"] and "unsent_points" not in client.tags


def test_points_that_never_got_through_are_counted_not_lost(monkeypatch, tmp_path):
    monkeypatch.setattr(tracking, "FIRST_DELAY", 0.001)
    monkeypatch.setattr(tracking, "_start_system_metrics", lambda run_id, uri: False)
    client = FlakyClient(failures=10**6)  # a store that never answers
    run = trial_run(client, tmp_path)
    run.log({"loss": 0.5, "eval_exact_match": 0.5}, 1)
    run.finish("COMPLETE", metrics={"final_exact_match": 0.5}, step=1)  # the trial still ends, COMPLETE
    assert run.sent == 0 and run.unsent == 3 and client.tags["unsent_points"] == "3"
    assert client.tags["state"] == "COMPLETE"


@needs_pg
def test_the_servers_limits_and_a_pooler_in_front_of_it_are_told_apart():
    direct, pooled = server_limits(PG), server_limits(POOLER)
    assert direct.max_connections >= 20 and not direct.pooled and direct.free > 0
    assert pooled.pooled and pooled.max_connections == direct.max_connections


@needs_pg
def test_a_full_server_is_waited_for_not_fatal(monkeypatch):
    """Every connection slot taken: before, opening the storage failed at once with "too many clients"
    (workers died at start); now it waits, and opens once a slot is free."""
    import psycopg  # noqa: PLC0415

    limits = server_limits(PG)
    held = []
    try:
        while True:  # take every slot a non-superuser may have
            try:
                held.append(psycopg.connect(PG))
            except psycopg.OperationalError as e:
                assert connections.refused(e), e
                break
            assert len(held) <= limits.max_connections
        threading.Timer(2.0, lambda: [held.pop().close() for _ in range(2)]).start()
        started = time.monotonic()
        storage = open_storage(PG, heartbeat=False)
        assert 1.5 < time.monotonic() - started < 60
        storage.get_all_studies()
        storage.engine.dispose()
    finally:
        for connection in held:
            connection.close()


@needs_pg
def test_the_load_benchmark_at_small_k_loses_nothing(tmp_path):
    """The benchmark's own path (fresh databases, an MLflow server as compose sizes it, forked workers
    through PgBouncer) at K = 4: every trial finished, every metric point stored. K = 256 is the benchmark."""
    import json  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, "-m", "thinker.bench.load", "--workers", "4", "--trials-per-worker", "1",
                           "--trial-seconds", "3", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["workers_failed"] == 0 and row["trials_complete"] >= 4 and row["through_pooler"], row
    assert row["points_logged"] > 0 and row["points_stored"] == row["points_logged"] and row["points_unsent"] == 0
    # the pool keeps 2; a socket being closed still counts in the reading
    assert row["connections_per_worker_max"] <= 4 and row["log_batches"] > 0 and row["tell_p99_s"] is not None


def test_a_worker_whose_trial_was_failed_as_stale_goes_on(monkeypatch, in_tmp):  # noqa: F811
    """Under heavy load a worker's heartbeat can come late: another worker then fails its running trial as
    stale and queues it again. The slow worker is alive: before, Optuna's refusal to record the trial's end
    ("Cannot tell a FAIL trial") killed it; now it goes on with the next trial."""
    import optuna  # noqa: PLC0415

    import thinker.sweeps.objective as objective  # noqa: PLC0415
    from tests.sweep_support import study, sweep  # noqa: PLC0415

    real_train, calls = objective.train, []

    def train(cfg, **kwargs):
        calls.append(1)
        result = real_train(cfg, **kwargs)
        if len(calls) == 1:  # what another worker's stale-trial check does to this one's trial
            running = study().get_trials(states=(optuna.trial.TrialState.RUNNING,))
            study().tell(running[0].number, state=optuna.trial.TrialState.FAIL)
        return result

    monkeypatch.setattr(objective, "train", train)
    result = sweep("--trials", "2", "--pruner", "none")
    assert result.exit_code == 0, result.output
    states = [t.state.name for t in study().trials]
    assert states.count("COMPLETE") == 2 and "FAIL" in states and len(calls) >= 3
