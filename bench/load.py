"""Load: K sweep workers on one PostgreSQL (through PgBouncer) and one MLflow server, nothing lost.

    eval "$(bash .ci/postgres.sh)"     # PostgreSQL and PgBouncer on loopback (THINKER_TEST_POSTGRES, _PGBOUNCER)
    python -m thinker.bench.load --workers 32,64,128,256 --json bench/results/load-cpu.json

For each K: fresh databases for Optuna and MLflow, an MLflow server on the PostgreSQL backend store
with the pool and worker count of docker/.env.example (as docker/compose.yaml runs it), the study and
the sweep's parent run, then K worker processes forked from this one (which imported Optuna, MLflow
and torch once, so they share those pages: 256 interpreters would not fit in 24 GB otherwise). Each
runs the project's own worker loop (`workers.run_worker`: the storage opener through the pooler,
heartbeats, the objective with its MLflow run and logging thread, pruning reports, its trial record)
with a stand-in for training that logs 12 metrics every `--log-every` seconds and evaluates (a batch
sent, a pruning report) every `--eval-every`: a real trial's rate, or faster. Reported per K: trials
finished, workers that failed and why, metric points stored against points logged, p50/p99 latency of
a log batch and of ask/tell, and the most connections each worker and the MLflow server held.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from types import SimpleNamespace

import psutil

from thinker.bench.args import BenchParser, positive_int, seconds, writable
from thinker.bench.servers import documented_settings, mlflow_server, sql, with_database
from thinker.machine import describe, label
from thinker.outputs import ready_to_write

KEYS = [f"load_m{i}" for i in range(11)] + ["eval_load_exact_match"]  # 12 points a log, as a trial's


def percentile(values: list[float], q: float) -> float | None:
    """>>> percentile([1, 2, 3, 4], 0.5), percentile([], 0.99)
    (2.5, None)
    """
    if not values:
        return None
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] if len(values) > 1 \
        else values[0]


def stand_in(log_every: float, eval_every: float, seconds: float):
    """A `train` that trains nothing: logs KEYS every `log_every` s, evaluates every `eval_every` s."""

    def train(cfg, logger=None, on_eval=None):
        started, step, logged = time.monotonic(), 0, 0
        next_eval = started + eval_every
        while time.monotonic() - started < seconds:
            time.sleep(log_every)
            step += cfg.batch_size
            evaluated = time.monotonic() >= next_eval
            metrics = {k: 0.5 for k in KEYS if evaluated or not k.startswith("eval_")}
            logger.log(metrics, step)
            logged += len(metrics)
            if evaluated:
                next_eval += eval_every
                on_eval(step, {"exact_match": min(1.0, step / 1e6)})  # a pruning report, as a trial's
        STATS["logged"] += logged
        return SimpleNamespace(exact_match=0.5, samples=step, train_seconds=seconds, samples_to_target=None,
                               restarts=0, stop_reason="budget", summary=lambda: {})

    return train


STATS: dict = {"logged": 0, "sent": 0, "unsent": 0, "batch_s": [], "ask_s": [], "tell_s": [], "error": None}


def worker_main(index: int, settings, parent_run_id: str, out: Path, args) -> None:
    """One forked worker: the project's worker loop with the stand-in, its figures to out/worker-N.json.
    Everything it imports was imported by the parent before the fork (`_imports`): shared, not copied."""
    objective, tracking, Interrupt, run_worker, route_library_logs, time_ask_and_tell = _imports()
    route_library_logs(out / f"worker-{index}.log")  # Optuna's and MLflow's messages, off the terminal
    objective.train = stand_in(args.log_every, args.eval_every, args.trial_seconds)
    objective.save_checkpoint = lambda folder, cfg, result: Path(folder, "model.pt").write_bytes(b"stand-in")
    tracking._start_system_metrics = lambda run_id, uri: False  # only the stand-in's points are counted
    time_ask_and_tell(STATS)
    real_finish = tracking.TrialRun.finish

    def finish(self, *a, **kw):
        real_finish(self, *a, **kw)
        STATS["sent"] += self.sent
        STATS["unsent"] += self.unsent
        STATS["batch_s"].extend(self.send_seconds)

    tracking.TrialRun.finish = finish
    try:
        run_worker(settings, parent_run_id, Interrupt(), index)
    except BaseException as e:  # noqa: BLE001 - recorded, the parent counts it
        STATS["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        traceback.print_exc()
    (out / f"worker-{index}.json").write_text(json.dumps(STATS))


def _imports():
    import thinker.sweeps.objective as objective  # noqa: PLC0415
    import thinker.sweeps.tracking as tracking  # noqa: PLC0415
    from thinker.sweeps.interrupt import Interrupt  # noqa: PLC0415
    from thinker.sweeps.logs import route_library_logs  # noqa: PLC0415
    from thinker.sweeps.study import time_ask_and_tell  # noqa: PLC0415
    from thinker.sweeps.workers import run_worker  # noqa: PLC0415

    return objective, tracking, Interrupt, run_worker, route_library_logs, time_ask_and_tell


def private_mb(pid: int) -> float:
    """Memory that is the process's own (USS), not shared with the parent it was forked from."""
    try:
        return psutil.Process(pid).memory_full_info().uss / 2**20
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0


def connections_to(pid: int, ports: set[int]) -> int:
    try:
        return sum(1 for c in psutil.Process(pid).net_connections(kind="tcp") if c.raddr and c.raddr.port in ports)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def server_connections(proc: subprocess.Popen, port: int) -> int:
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    return sum(connections_to(p.pid, {port}) for p in family)


def one_load(k: int, args, postgres: str, pooler: str) -> dict:
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    from thinker.sweeps.connections import server_limits  # noqa: PLC0415
    from thinker.sweeps.coordinator import ParentRun  # noqa: PLC0415
    from thinker.sweeps.settings import SweepSettings  # noqa: PLC0415
    from thinker.sweeps.space import load_space  # noqa: PLC0415
    from thinker.sweeps.study import create_study, open_storage  # noqa: PLC0415
    from thinker.sweeps.tracking import Tracker  # noqa: PLC0415

    tag = uuid.uuid4().hex[:8]
    optuna_db, mlflow_db = f"load_optuna_{tag}", f"load_mlflow_{tag}"
    sql(postgres, f"CREATE DATABASE {optuna_db}", f"CREATE DATABASE {mlflow_db}")
    env = documented_settings()
    pg_port, pooler_port = make_url(postgres).port, make_url(pooler).port
    result: dict = {"workers": k}
    try:
        with tempfile.TemporaryDirectory() as tmp, \
                mlflow_server(with_database(postgres, mlflow_db), Path(tmp), env) as (tracking_uri, server):
            storage = with_database(pooler, optuna_db)
            settings = SweepSettings(task="copy", trials=k * args.trials_per_worker, study=f"load-{k}", storage=storage,
                                     tracking_uri=tracking_uri, experiment=f"load-{k}", space=load_space("copy"),
                                     pruner="median", jobs=k, threads=1, placement=f"load: {k} forked workers")
            opened = open_storage(storage, heartbeat=False)
            study = create_study(settings, opened)
            parent = ParentRun(Tracker(tracking_uri, settings.experiment), settings, study)
            limits = server_limits(storage)
            opened.engine.dispose()  # its connection is not the workers' to inherit
            _imports()
            gc.disable()  # no collection in the parent touches (and so copies) pages the children share
            gc.freeze()
            started = time.monotonic()
            pids = []
            for i in range(k):
                pid = os.fork()
                if pid == 0:  # the child: the worker, then out without running the parent's cleanup
                    gc.enable()
                    code = 0
                    try:
                        worker_main(i, settings, parent.run_id, Path(tmp), args)
                    except BaseException:  # noqa: BLE001
                        code = 1
                    finally:
                        os._exit(code)
                pids.append(pid)
            gc.unfreeze()
            gc.enable()
            peak_worker, peak_server, peak_pg, peak_private, sampled = 0, 0, 0, 0.0, 0.0
            deadline = started + args.trials_per_worker * args.trial_seconds * 4 + 300
            alive = set(pids)
            exit_codes = {}
            while alive and time.monotonic() < deadline:
                peak_worker = max([peak_worker] + [connections_to(p, {pg_port, pooler_port}) for p in list(alive)])
                if time.monotonic() - sampled > 10:  # reading smaps is slow: every 10 s, and a sample of 16
                    peak_private = max([peak_private] + [private_mb(p) for p in list(alive)[:16]])
                    sampled = time.monotonic()
                peak_server = max(peak_server, server_connections(server, pg_port))
                peak_pg = max(peak_pg, sql(postgres, "SELECT count(*) FROM pg_stat_activity "
                                                     "WHERE backend_type = 'client backend'")[0][0][0] - 1)
                for p in list(alive):
                    done, status = os.waitpid(p, os.WNOHANG)
                    if done:
                        alive.discard(p)
                        exit_codes[p] = os.waitstatus_to_exitcode(status)
                time.sleep(1.0)
            for p in alive:  # past the deadline: counted as failed
                os.kill(p, signal.SIGKILL)
                exit_codes[p] = -9
                os.waitpid(p, 0)
            wall = time.monotonic() - started
            stats = []
            for i in range(k):
                path = Path(tmp) / f"worker-{i}.json"
                stats.append(json.loads(path.read_text()) if path.exists() else {"error": "no figures (killed?)"})
            states = [t.state.name for t in study.get_trials(deepcopy=False)]
            stored = sql(with_database(postgres, mlflow_db),
                         "SELECT count(*) FROM metrics WHERE key LIKE '%load_%'")[0][0][0]
            parent.finish(study, {}, "FINISHED")
        errors = [s["error"] for s in stats if s.get("error")] + [
            f"exit code {c}" for c in exit_codes.values() if c not in (0,)]
        logged = sum(s.get("logged", 0) for s in stats)
        batch = [x for s in stats for x in s.get("batch_s", [])]
        ask = [x for s in stats for x in s.get("ask_s", [])]
        tell = [x for s in stats for x in s.get("tell_s", [])]
        result.update(
            wall_seconds=round(wall, 1), trials=len(states), trials_complete=states.count("COMPLETE"),
            trials_failed=states.count("FAIL"), trials_target=settings.trials,
            workers_failed=len({i for i, s in enumerate(stats) if s.get("error")} |
                               {i for i, p in enumerate(pids) if exit_codes.get(p) not in (0,)}),
            failures=sorted(set(errors))[:5], points_logged=logged, points_stored=stored,
            points_unsent=sum(s.get("unsent", 0) for s in stats),
            stored_share=round(stored / logged, 6) if logged else None,
            log_batches=len(batch), log_batch_p50_s=percentile(batch, 0.5), log_batch_p99_s=percentile(batch, 0.99),
            ask_p50_s=percentile(ask, 0.5), ask_p99_s=percentile(ask, 0.99),
            tell_p50_s=percentile(tell, 0.5), tell_p99_s=percentile(tell, 0.99),
            connections_per_worker_max=peak_worker, mlflow_server_connections_max=peak_server,
            postgres_connections_max=peak_pg, postgres_max_connections=limits.max_connections if limits else None,
            worker_private_mb_max=round(peak_private), load_average=[round(x, 1) for x in os.getloadavg()],
            through_pooler=bool(limits and limits.pooled))
    finally:
        sql(postgres, f"DROP DATABASE IF EXISTS {optuna_db} WITH (FORCE)",
            f"DROP DATABASE IF EXISTS {mlflow_db} WITH (FORCE)")
    return result


def table(rows: list[dict]) -> str:
    head = ("K", "trials", "failed workers", "points stored/logged", "batch p50/p99 s", "ask p99 s", "tell p99 s",
            "conn/worker", "mlflow conns", "pg conns")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    for r in rows:
        lines.append(" | ".join(str(c) for c in (
            r["workers"], f"{r['trials_complete']}/{r['trials_target']}", r["workers_failed"],
            f"{r['points_stored']:,}/{r['points_logged']:,}",
            f"{fmt(r['log_batch_p50_s'])}/{fmt(r['log_batch_p99_s'])}",
            fmt(r["ask_p99_s"]), fmt(r["tell_p99_s"]), r["connections_per_worker_max"],
            r["mlflow_server_connections_max"], r["postgres_connections_max"])))
    return "\n".join(f"| {line} |" for line in lines)


def main(argv: list[str] | None = None) -> None:
    parser = BenchParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="32,64,128,256", help="K, comma-separated")
    parser.add_argument("--trials-per-worker", type=positive_int, default=2)
    parser.add_argument("--trial-seconds", type=seconds, default=20.0)
    parser.add_argument("--log-every", type=seconds, default=0.5, help="seconds between a stand-in's logs")
    parser.add_argument("--eval-every", type=seconds, default=2.0, help="seconds between its evaluations")
    parser.add_argument("--postgres", default=os.environ.get("THINKER_TEST_POSTGRES"))
    parser.add_argument("--pooler", default=os.environ.get("THINKER_TEST_PGBOUNCER"))
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    try:
        ks = [int(k) for k in args.workers.split(",")]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        parser.error(f"--workers takes positive numbers like 32,64, got {args.workers!r}")
    if not args.postgres or not args.pooler:
        parser.error("needs --postgres and --pooler URLs (eval \"$(bash .ci/postgres.sh)\" sets both)")
    if writable(args.json, "--json"):
        ready_to_write(Path(args.json))
    import torch  # noqa: PLC0415

    machine = describe(torch.device("cpu"))
    report = {"date": time.strftime("%Y-%m-%d"), **machine, "machine": label(machine),
              "settings": documented_settings(), "trials_per_worker": args.trials_per_worker,
              "trial_seconds": args.trial_seconds, "log_every": args.log_every, "eval_every": args.eval_every,
              "rows": []}
    for k in ks:
        print(f"load: {k} workers ...", file=sys.stderr, flush=True)
        report["rows"].append(one_load(k, args, args.postgres, args.pooler))
        print(f"  {report['rows'][-1]}", file=sys.stderr, flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(table(report["rows"]), file=sys.stderr)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
