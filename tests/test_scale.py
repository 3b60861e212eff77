"""Scale-out with real servers: workers on PostgreSQL and an `mlflow server`, killed and interrupted.

    eval "$(bash .ci/postgres.sh)" && pytest tests/test_scale.py

Needs THINKER_TEST_POSTGRES (a PostgreSQL URL; `.ci/postgres.sh` starts a server on loopback and
prints it); skipped without it. The MLflow server is started here, on loopback.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.test_first_open import at_once
from thinker.sweeps.stores import TrackingError, check_tracking
from thinker.sweeps.study import open_storage
from thinker.sweeps.trial import TrialRecord

PG = os.environ.get("THINKER_TEST_POSTGRES")
PASSWORD = PG.split(":")[2].split("@")[0] if PG else None
SPACE = Path(__file__).parent / "fixtures" / "tiny_copy.toml"
DOCKER = Path(__file__).parent.parent / "docker"
needs_pg = pytest.mark.skipif(not PG, reason="THINKER_TEST_POSTGRES not set (eval \"$(bash .ci/postgres.sh)\")")


def execute(*statements: str) -> None:
    """SQL on the test server. psycopg is imported here, not at the top: a GPU machine collecting every
    test module for `pytest -m gpu` has no psycopg, and one failed import stops the whole collection."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(PG, autocommit=True) as db:
        for statement in statements:
            db.execute(statement)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on loopback with a SQLite backend and served artifacts."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 - open while the server runs
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts"),
         "--workers", "1"],
        cwd=root, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        log.close()
        pytest.fail("mlflow server did not start: " + (root / "server.log").read_text()[-2000:])
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@contextmanager
def postgres():
    """One storage for the test's reads, its connections closed after (not left for the garbage collector)."""
    storage = optuna.storages.RDBStorage(PG)
    try:
        yield storage
    finally:
        storage.engine.dispose()


def slow_space(tmp_path: Path) -> Path:
    """Trials of a few seconds that never stop early, so a worker can be caught mid-trial."""
    path = tmp_path / "slow.toml"
    path.write_text(SPACE.read_text().replace("target = 1.0", "target = 2.0")
                    .replace("max_samples = 6144", "max_samples = 12288"))
    return path


def worker(study: str, trials: int, space: Path, tracking: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "THINKER_HEARTBEAT_SECONDS": "1", "THINKER_GRACE_SECONDS": "4"}
    cmd = [sys.executable, "-m", "thinker", "worker", "copy", "--space", str(space), "--trials", str(trials),
           "--storage", PG, "--tracking-uri", tracking, "--study", study, "--experiment", study,
           "--device", "cpu", "--pruner", "none", "--trials-per-device", "1"]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_running_trial(study: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline, pid = time.time() + timeout, proc.pid
    with postgres() as storage:
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"worker {pid} exited ({proc.returncode}) before it started a trial: "
                            f"{proc.stderr.read()[-2000:]}")
            try:
                s = optuna.load_study(study_name=study, storage=storage)
                if any(t.state.name == "RUNNING" and (TrialRecord.from_trial(t).worker or "").endswith(f":{pid}")
                       for t in s.trials):
                    return
            except KeyError:  # the study does not exist yet
                pass
            time.sleep(0.3)
    pytest.fail(f"worker {pid} never started a trial")


def server_runs(tracking: str, experiment: str):
    client = MlflowClient(tracking)
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], max_results=1000)


@needs_pg
def test_workers_starting_together_on_an_empty_database_all_open_it():
    # Each creates Optuna's and MLflow's tables; before, all but one failed ("duplicate key value
    # violates unique constraint"), as the workers of `docker compose ... up --scale worker=4` would.
    schemas = [f"fresh_{uuid.uuid4().hex[:8]}" for _ in ("optuna", "mlflow")]  # as two databases would be
    execute(*(f"CREATE SCHEMA {schema}" for schema in schemas))
    try:
        storage, tracking = (f"{PG}?options=-csearch_path%3D{schema}" for schema in schemas)
        assert at_once(4, lambda: open_storage(storage).engine.dispose()) == ["ok"] * 4
        # MLflow opens one store per URL in a process, so these are processes, released together once imported
        code = ("from thinker.sweeps.tracking import Tracker; import sys; print('ready', flush=True); input(); "
                "Tracker(sys.argv[1], 'fresh')")
        tracking = tracking.replace("postgresql:", "postgresql+psycopg:")
        trackers = [subprocess.Popen([sys.executable, "-c", code, tracking],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for _ in range(3)]
        assert [p.stdout.readline() for p in trackers] == ["ready\n"] * 3
        for p in trackers:
            p.stdin.write("go\n")
            p.stdin.flush()
        errors = [p.communicate(timeout=180)[1] for p in trackers]
        assert [p.returncode for p in trackers] == [0] * 3, [e[-1000:] for e in errors]
    finally:
        execute(*(f"DROP SCHEMA {schema} CASCADE" for schema in schemas))


@needs_pg
def test_a_tracking_store_in_postgresql_is_checked_by_connecting_once():
    check_tracking(PG)  # answers: nothing raised, nothing created
    missing = PG.rsplit("/", 1)[0] + "/no_such_db"  # the server answers, the database is not there
    said = r'^cannot use tracking store postgresql://thinker:\*\*\*@.*database "no_such_db" does not exist'
    with pytest.raises(TrackingError, match=said) as e:
        check_tracking(missing)
    assert PASSWORD not in str(e.value) and "\n" not in str(e.value)


@needs_pg
def test_two_workers_one_killed_then_a_fresh_one(mlflow_server, tmp_path):
    study_name = f"scale-{uuid.uuid4().hex[:8]}"
    space, n = slow_space(tmp_path), 5
    a = worker(study_name, n, space, mlflow_server, tmp_path)
    b = worker(study_name, n, space, mlflow_server, tmp_path)
    wait_for_running_trial(study_name, a)
    time.sleep(1.0)
    a.kill()  # SIGKILL mid-trial: no cleanup runs in that worker
    a.communicate(timeout=30)  # waits, and closes its pipes
    c = worker(study_name, n, space, mlflow_server, tmp_path)
    outputs = [p.communicate(timeout=240) for p in (b, c)]
    assert b.returncode == 0 and c.returncode == 0, outputs

    with postgres() as storage:
        trials = optuna.load_study(study_name=study_name, storage=storage).trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert n <= len(complete) <= n + 2  # overshoot: at most the trials in flight at the end
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    killed = [t for t in trials if t.state.name == "FAIL" and TrialRecord.from_trial(t).worker.endswith(f":{a.pid}")]
    assert len(killed) == 1
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert retried and retried[0].state.name == "COMPLETE" and retried[0].params == killed[0].params
    assert len({TrialRecord.from_trial(t).worker for t in complete}) >= 2  # both survivors contributed

    client, runs = server_runs(mlflow_server, study_name)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parent_ids = {r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags}
    assert all(r.data.tags["mlflow.parentRunId"] in parent_ids for r in children)
    by_trial = {}
    for r in children:
        by_trial.setdefault(int(r.data.tags["optuna.trial_number"]), []).append(r)
    assert all(len(rs) == 1 for rs in by_trial.values())  # one run per trial number
    for t in complete:
        assert by_trial[t.number][0].info.run_id == TrialRecord.from_trial(t).mlflow_run_id
        assert by_trial[t.number][0].info.status == "FINISHED"
    assert by_trial[killed[0].number][0].info.status == "KILLED"  # closed by a surviving worker
    assert not [r for r in runs if r.info.status == "RUNNING"]

    for out, err in outputs:
        assert PASSWORD not in out and PASSWORD not in err
    for r in runs:
        assert not any(PASSWORD in str(v) for v in (*r.data.tags.values(), *r.data.params.values()))
    assert "***" in next(r for r in runs if r.info.run_id in parent_ids).data.tags["storage"]


@needs_pg
def test_sigint_to_a_worker_leaves_no_running_run(mlflow_server, tmp_path):
    study_name = f"sigint-{uuid.uuid4().hex[:8]}"
    w = worker(study_name, 3, slow_space(tmp_path), mlflow_server, tmp_path)
    wait_for_running_trial(study_name, w)
    time.sleep(1.0)
    w.send_signal(signal.SIGINT)
    out, err = w.communicate(timeout=60)
    assert w.returncode == 130, err
    _, runs = server_runs(mlflow_server, study_name)
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    assert [r.info.status for r in runs if "mlflow.parentRunId" in r.data.tags] == ["KILLED"]


def test_compose_file_has_the_services_loopback_ports_and_a_gpu_worker():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "pgbouncer", "mlflow", "optuna-dashboard", "worker"} <= set(services)
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    assert services["postgres"]["healthcheck"] and services["postgres"]["volumes"]
    assert "--backend-store-uri postgresql+psycopg://" in " ".join(services["mlflow"]["command"].split())
    # workers reach PostgreSQL through the pooler; the MLflow server's pool and workers are sized
    assert "@pgbouncer:6432/optuna" in services["worker"]["environment"]["THINKER_STORAGE"]
    assert {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"} <= set(
        services["mlflow"]["environment"])
    env = dict(line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines()
               if "=" in line and not line.startswith("#"))
    server_side = int(env["PGBOUNCER_POOL_SIZE"]) + int(env["MLFLOW_WORKERS"]) * (
        int(env["MLFLOW_DB_POOL_SIZE"]) + int(env["MLFLOW_DB_MAX_OVERFLOW"]))
    assert server_side + 10 <= int(env["POSTGRES_MAX_CONNECTIONS"])  # the dashboard and psql fit beside them


def test_compose_file_holds_no_literal_password():
    text = (DOCKER / "compose.yaml").read_text()
    compose = yaml.safe_load(text)
    for service in compose["services"].values():
        env = service.get("environment", {})
        for key, value in env.items():
            if "PASSWORD" in key or "postgresql://" in str(value):
                assert "${POSTGRES_PASSWORD" in str(value), (key, value)
    example = (DOCKER / ".env.example").read_text()
    assert "POSTGRES_PASSWORD=" in example
    ignored = subprocess.run(["git", "check-ignore", "-q", str(DOCKER / ".env")], cwd=DOCKER).returncode
    assert ignored == 0, "docker/.env must be ignored by git"
