"""`thinker sweep` end to end on tiny trials (about a second each): `pytest tests/test_sweep.py`.

Every test runs in its own empty directory, with the default stores (optuna.db, mlflow.db) there.
"""

import json
import os
from pathlib import Path

import optuna
import pytest
import torch

from tests.faults import device_crash, diverge, error, inject, nan_once, scores
from tests.sweep_support import SPACE, finished, in_tmp, last_json, record, runner, runs, study, sweep  # noqa: F401
from thinker.cli import app
from thinker.sweeps.study import fail_trials_of, open_storage
from thinker.sweeps.trial import TrialRecord

pytestmark = pytest.mark.usefixtures("in_tmp")


def test_sweep_tracks_every_trial_and_resumes():
    result = sweep("--trials", "3", "--pruner", "none")
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert summary["finished"] == 3 and summary["status"] == "finished"
    assert len(finished(study())) == 3

    client, parents, children = runs()
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.data.tags["optuna.study"] == "copy" and parent.data.tags["sampler"] == "tpe"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.info.run_name for c in children} == {"trial-0000", "trial-0001", "trial-0002"}
    for child in children:
        assert child.info.status == "FINISHED"
        assert len(client.get_metric_history(child.info.run_id, "eval_exact_match")) >= 2
        for phase in ("data_ms", "forward_ms", "backward_ms"):
            assert client.get_metric_history(child.info.run_id, phase)
        assert {"lr", "batch_size", "steps"} <= set(child.data.params)
    by_number = {t.number: t for t in study().trials}
    for child in children:
        trial = by_number[int(child.data.tags["optuna.trial_number"])]
        assert record(trial).mlflow_run_id == child.info.run_id
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"plots", "best_trial"} <= artifacts
    assert "plots/study.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}

    result = sweep("--trials", "5", "--pruner", "none")
    assert result.exit_code == 0, result.output
    assert len(finished(study())) == 5
    _, parents, children = runs()
    assert len(parents) == 2 and len(children) == 5
    assert all(r.info.status != "RUNNING" for r in parents + children)

    result = sweep("--trials", "5")
    assert result.exit_code == 0
    assert "already has 5 finished trials" in result.stderr
    assert last_json(result)["status"] == "already finished"
    assert len(runs()[1]) == 2  # no new parent run


def test_a_deleted_experiment_is_one_line_and_leaves_no_study():
    assert sweep("--trials", "1", "--pruner", "none").exit_code == 0
    client, _, _ = runs()
    experiment = client.get_experiment_by_name("thinker-copy")
    client.delete_experiment(experiment.experiment_id)  # as from the MLflow UI
    result = sweep("--trials", "1", "--study", "new")
    assert result.exit_code == 2
    assert result.stderr.startswith("thinker: error: MLflow experiment 'thinker-copy' is deleted (its name stays "
                                    f"taken): restore it (mlflow experiments restore --experiment-id "
                                    f"{experiment.experiment_id}) or pass --experiment NAME")
    assert "new" not in optuna.get_all_study_names("sqlite:///optuna.db")
    assert sweep("--trials", "1", "--study", "new", "--experiment", "copy-again").exit_code == 0


def test_one_store_given_for_the_other_is_refused_and_left_as_it_was():
    """Optuna and MLflow both keep SQLite files: opened on the other's, each would add its tables to it."""
    assert sweep("--trials", "1", "--pruner", "none").exit_code == 0
    Path("picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    before = {name: Path(name).read_bytes() for name in ("optuna.db", "mlflow.db")}
    for args, message in [
        (["report", "copy", "--storage", "sqlite:///mlflow.db"], "storage sqlite:///mlflow.db: mlflow.db is not an "
                                                                 "Optuna study database (it holds MLflow's runs)"),
        (["sweep", "copy", "--storage", "sqlite:///other.db", "--tracking-uri", "sqlite:///optuna.db"],
         "tracking URI sqlite:///optuna.db: optuna.db is not an MLflow store (it holds Optuna's studies)"),
        (["sweep", "copy", "--tracking-uri", "sqlite:///optuna.db"], "--storage and --tracking-uri name one database"),
        (["eval", "0123456789abcdef0123456789abcdef", "--tracking-uri", "sqlite:///optuna.db"], "is not an MLflow"),
        (["eval", "0123456789abcdef0123456789abcdef", "--tracking-uri", "sqlite:///new.db"], "no MLflow store at"),
        (["report", "copy", "--storage", "sqlite:///picture.png"], "picture.png is not an SQLite database"),
        (["report", "copy", "--storage", "journal:picture.png"], "cannot open storage 'journal:picture.png'"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert {name: Path(name).read_bytes() for name in before} == before
    assert not Path("new.db").exists() and not Path("other.db").exists()


def test_pruning_prunes_and_records_why():
    result = sweep("--trials", "8", "--sampler", "random", "--seed", "3")
    assert result.exit_code == 0, result.output
    pruned = [t for t in study().trials if t.state.name == "PRUNED"]
    assert pruned, [t.state.name for t in study().trials]
    _, _, children = runs()
    states = {c.data.tags["optuna.trial_number"]: c.data.tags["state"] for c in children}
    for t in pruned:
        assert states[str(t.number)] == "PRUNED"
        assert record(t).samples < 6144


def test_the_pruner_compares_the_best_exact_match_so_far_not_the_last(monkeypatch):
    """A trial returns its best evaluation, so that is what it stands at, at every rung: the last one, lower
    here, would have the pruner stop trials that had already done better than their latest score."""
    Path("space.toml").write_text(Path(SPACE).read_text().replace("target = 1.0", "target = 2.0"))  # no early stop
    scores(monkeypatch, [0.25, 0.75, 0.5, 0.0])
    result = runner.invoke(app, ["sweep", "copy", "--space", "space.toml", "--device", "cpu", "--jobs", "1",
                                 "--trials", "1", "--pruner", "none", "--max-samples", "2048"])
    assert result.exit_code == 0, result.output
    (trial,) = study().trials
    assert trial.intermediate_values == {512: 0.25, 1024: 0.75, 1536: 0.75, 2048: 0.75}


class PruneAlways(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


@pytest.mark.parametrize("max_samples, state", [(1024, "PRUNED"), (512, "COMPLETE")])
def test_a_trial_is_never_pruned_at_its_last_evaluation(monkeypatch, max_samples, state):
    """Pruned at 512 of 1,024 samples; at 512 of 512 it has trained all it will, so its result counts."""
    monkeypatch.setattr("thinker.sweeps.study.optuna_pruner", lambda *args: PruneAlways())
    result = sweep("--trials", "2", "--max-samples", str(max_samples))
    assert result.exit_code == 0, result.output
    assert [t.state.name for t in study().trials] == [state, state]
    assert all(record(t).samples == 512 for t in study().trials)

def test_failures_are_recorded_and_the_sweep_goes_on(monkeypatch):
    inject(monkeypatch, {0: diverge(512), 1: error(512)})
    result = sweep("--trials", "3", "--pruner", "none")
    assert result.exit_code == 0, result.output
    trials = {t.number: t for t in study().trials}
    assert trials[0].state.name == "FAIL" and "diverged" in record(trials[0]).fail_reason
    assert trials[1].state.name == "FAIL" and "injected fault" in record(trials[1]).fail_reason
    assert len(finished(study())) == 3
    _, _, children = runs()
    failed = [c for c in children if c.data.tags["state"] == "FAIL"]
    assert len(failed) == 2 and all(c.info.status == "FAILED" for c in failed)
    assert all("fail_reason" in c.data.tags for c in failed)


def test_a_lost_device_stops_its_worker_instead_of_failing_every_trial(monkeypatch):
    """After a sticky CUDA error every later trial in that process fails at once: the worker stops after the
    first rather than piling up failed trials and runs until its failure guard gives up."""
    inject(monkeypatch, {0: device_crash(512)})
    result = sweep("--trials", "4", "--pruner", "none")
    trials = study().trials
    assert [t.state.name for t in trials] == ["FAIL"], result.output
    assert "illegal memory access" in record(trials[0]).fail_reason
    assert "device is unusable" in record(trials[0]).fail_reason
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "stopped" and "illegal memory access" in summary["last_failure"]
    assert result.exit_code == 1  # a sweep its failures stopped is no success
    assert summary["stop_reason"] == "its trials kept failing"
    assert result.stderr.strip().splitlines()[-1].startswith("stopped: its trials kept failing; the last failure: ")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_trials_of_a_worker_process_that_died_are_failed_and_retried_at_once():
    """Not after the heartbeat's grace period in a later invocation: the coordinator saw the process die."""
    storage = open_storage("sqlite:///optuna.db")
    dead = optuna.create_study(storage=storage, study_name="copy")
    for worker in ("host:4242", "host:1"):  # the dead process's trial, and a live one's
        TrialRecord(worker=worker).to_storage(dead.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1,
                                                                                                     log=True)}))
    assert fail_trials_of(dead, storage, "host:4242", "worker-1 died (signal 9, SIGKILL)") == 1
    killed, alive, retry = dead.get_trials()
    assert (killed.state.name, alive.state.name, retry.state.name) == ("FAIL", "RUNNING", "WAITING")
    assert record(killed).fail_reason == "worker-1 died (signal 9, SIGKILL)"
    assert retry.params == killed.params and retry.system_attrs["failed_trial"] == killed.number
    assert record(retry) == TrialRecord()  # a fresh trial: the failure and its worker stay with the failed one
    # the study was done: no retry
    assert fail_trials_of(dead, storage, "host:1", "worker-0 died (exit code 1)", retry=False) == 1
    assert [t.state.name for t in dead.get_trials()] == ["FAIL", "FAIL", "WAITING"]


def test_a_sweep_stopped_by_its_timeout_is_a_success():
    result = sweep("--trials", "50", "--timeout", "1")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "stopped" and summary["finished"] < 50 and summary["last_failure"] is None
    assert summary["stop_reason"] == "timeout"
    assert result.exit_code == 0, result.output
    _, parents, _ = runs()
    assert parents[0].data.tags["stop_reason"] == "timeout"


def test_failures_that_stop_a_sweep_after_its_timeout_passed_are_no_success(monkeypatch):
    # The trial outlasts the timeout, then loses its device: the workers gave up, the timeout stopped nothing.
    inject(monkeypatch, {0: device_crash(1024)})
    result = sweep("--trials", "4", "--pruner", "none", "--timeout", "0.1")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "stopped" and summary["sweep_seconds"] > 0.1
    assert summary["stop_reason"] == "its trials kept failing"
    assert result.exit_code == 1, result.output


def test_nan_once_recovers_inside_the_trial(monkeypatch):
    inject(monkeypatch, {0: nan_once(1024)})
    result = sweep("--trials", "1", "--pruner", "none")
    assert result.exit_code == 0, result.output
    (trial,) = study().trials
    assert trial.state.name == "COMPLETE" and record(trial).restarts == 1


def test_two_workers_share_one_study_without_lock_errors(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # auto: one single-threaded worker per core
    result = sweep("--trials", "4", "--trials-per-device", "auto", "--pruner", "none")
    assert result.exit_code == 0, result.output
    assert "workers: 2 on this machine, 1 thread each (auto: one single-threaded trial per CPU core" in result.stderr
    assert "locked" not in result.output
    assert 4 <= len(finished(study())) <= 5  # at most the trials in flight when the 4th finished
    _, _, children = runs()
    assert len({c.data.tags["worker"] for c in children}) == 2  # host:pid of each worker process
    assert len({c.data.tags["optuna.trial_number"] for c in children}) == len(children)
    assert all(c.info.status != "RUNNING" for c in children)


def test_pareto_objective_gives_a_front():
    result = sweep("--trials", "3", "--objective", "pareto-samples")
    assert result.exit_code == 0, result.output
    s = study()
    assert [d.name for d in s.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert last_json(result)["pareto_front"]
    client, parents, _ = runs()
    assert "plots/pareto_front.html" in {a.path for a in client.list_artifacts(parents[0].info.run_id, "plots")}


def test_time_to_target_minimises_samples():
    result = sweep("--trials", "2", "--objective", "time-to-target", "--pruner", "none")
    assert result.exit_code == 0, result.output
    s = study()
    assert s.direction.name == "MINIMIZE"
    for t in s.trials:
        reached = record(t).samples_to_target
        assert t.value == (reached if reached is not None else 6144 * (2 - record(t).exact_match))


def test_length_objective_ranks_by_longer_problems_and_logs_their_curve():
    result = sweep("--trials", "2", "--objective", "length", "--pruner", "none")
    assert result.exit_code == 0, result.output
    s = study()
    assert s.direction.name == "MAXIMIZE"
    client, _, _ = runs()
    for t in s.trials:
        assert record(t).config["length_eval"] == 8  # twice the space's 4 symbols
        curve = client.get_metric_history(record(t).mlflow_run_id, "eval_length_exact_match")
        assert len(curve) == len(t.intermediate_values) >= 1
        # the pruner followed the longer problems' exact match; the value is the saved model's
        assert max(t.intermediate_values.values()) == max(m.value for m in curve)
        final = client.get_run(record(t).mlflow_run_id).data.metrics["final_length_exact_match"]
        assert t.value == pytest.approx(final)


def test_length_objective_searches_additions_length_space_unless_one_is_given():
    from thinker.sweeps.space import load_space, shipped_for  # noqa: PLC0415

    assert shipped_for("addition", "length") == "addition-length"
    assert shipped_for("addition", "accuracy") == "addition" and shipped_for("copy", "length") == "copy"
    space = load_space(shipped_for("addition", "length"))  # every corner of it builds a valid config
    assert space.task == "addition" and space.fixed["length_eval"] == 6 and "absolute_positions" in space.params


def test_report_and_rerun_from_a_trial(tmp_path):
    assert sweep("--trials", "2", "--pruner", "none").exit_code == 0
    result = runner.invoke(app, ["report", "copy", "--csv", "out/trials.csv", "--plot", "out/study.png"])
    assert result.exit_code == 0, result.output  # out/ did not exist
    assert "best trials" in result.stdout
    assert Path("out/trials.csv").read_text().startswith("trial,state,value")
    assert Path("out/study.png").read_bytes().startswith(b"\x89PNG")
    before = Path("optuna.db").read_bytes()
    for args, message in ((["--plot", "optuna.db"], "--plot 'optuna.db' would overwrite the study's storage"),
                          (["--csv", "a", "--plot", "./a"], "--plot 'a' would overwrite the --csv file")):
        result = runner.invoke(app, ["report", "copy", *args])
        assert result.exit_code == 2 and result.stderr.strip() == f"thinker: error: {message}"
    assert Path("optuna.db").read_bytes() == before and not Path("a").exists()
    best = study().best_trial
    result = runner.invoke(app, ["train", "copy", "--from-trial", f"copy:{best.number}", "--out", "rerun"])
    assert result.exit_code == 0, result.output
    assert last_json(result)["samples"] == record(best).samples  # the same run, bit for bit
    run_id = record(best).mlflow_run_id
    result = runner.invoke(app, ["train", "copy", "--from-trial", run_id, "--out", "rerun2"])
    assert result.exit_code == 0, result.output
    assert last_json(result)["samples"] == record(best).samples  # the MLflow run holds the same config


@pytest.mark.parametrize("variable", ["THINKER_HEARTBEAT_SECONDS", "THINKER_GRACE_SECONDS"])
def test_a_bad_heartbeat_setting_is_one_line(variable, monkeypatch):
    monkeypatch.setenv(variable, "2.5")
    result = runner.invoke(app, ["sweep", "copy", "--trials", "1"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"thinker: error: {variable} must be a whole number of seconds, got '2.5'"


@pytest.mark.parametrize("args, message", [
    (["sweep", "divide"], "unknown task 'divide'"),
    (["sweep", "copy", "--trials", "0"], "Invalid value for '--trials': Input should be greater than or equal to 1"),
    (["sweep", "copy", "--jobs", "0"], "Invalid value for '--jobs': Input should be greater than or equal to 1"),
    (["sweep", "copy", "--timeout", "0"], "--timeout must be positive"),
    (["sweep", "copy", "--sampler", "grid"], "unknown sampler 'grid'"),
    (["sweep", "copy", "--pruner", "sometimes"], "unknown pruner 'sometimes'"),
    (["sweep", "copy", "--objective", "vibes"], "unknown objective 'vibes'"),
    (["sweep", "copy", "--storage", "not a url"], "malformed storage URL"),
    (["sweep", "copy", "--storage", "postgresql://u:hunter2@127.0.0.1:1/db"], "cannot open storage"),
    (["sweep", "copy", "--tracking-uri", "http://127.0.0.1:9"], "is unreachable"),
    (["sweep", "copy", "--tracking-uri", "postgresql://u:hunter2@127.0.0.1:1/db"],  # not minutes of MLflow's retries
     "cannot use tracking store postgresql://u:***@127.0.0.1:1/db: connection failed"),
    (["sweep", "copy", "--storage", "sqlite:///runs.db", "--tracking-uri", "sqlite:///runs.db"], "name one database"),
    (["sweep", "copy", "--storage", "postgresql://u:hunter2@127.0.0.1:1/db", "--tracking-uri",
      "postgresql://u:hunter2@127.0.0.1:1/db"], "name one database (postgresql://u:***@127.0.0.1:1/db)"),
    (["sweep", "copy", "--space", "missing.toml"], "not found"),
    (["sweep", "copy", "--space", "/"], "space file /: cannot be read"),  # not "no space shipped for task"
    (["sweep", "copy", "--jobs", "100000"], "--jobs 100000: 100,000 worker processes need about 50,000 GiB"),
    (["sweep", "copy", "--device", "cpu", "--trials-per-device", "100000"], "100,000 worker processes need"),
    (["report", "copy"], "no Optuna study database at optuna.db"),
    (["report"], "name a task or pass --study"),
    (["report", "copy", "--storage", "not a url", "--plot", "p.png"], "malformed storage URL"),
    (["report", "copy", "--plot", "."], "--plot '.' is a directory"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, message, tmp_path):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "hunter2" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


LR = '\n[params]\nlr = { type = "float", low = 0.1, high = 1 }'
BAD_SPACES = {
    "not toml [": "not valid TOML",
    'colour = "red"\n[params]\nlr = { type = "float", low = 0.1, high = 1 }': "unknown key(s) colour",
    '[params]\nlearning_rate = { type = "float", low = 0.1, high = 1 }': "unknown key params.learning_rate",
    '[params]\nlr = { type = "float", low = 1, high = 0.1 }': "low (1) > high (0.1)",
    '[params]\nlr = { type = "normal", low = 0.1, high = 1 }': "unknown type 'normal'",
    '[params]\nlr = { type = "float", low = 0.1, high = 1, base = 2 }': "unknown key(s) base",
    '[params]\nlr = { type = "float", low = 0, high = 1, log = true }': "log scale needs low > 0",
    '[params]\nsteps = { type = "int", low = 1.5, high = 3 }': "whole numbers",
    '[params]\nbatch_size = { type = "categorical", choices = [] }': "non-empty list",
    '[budget]\npatience = 3\n[params]\nlr = { type = "float", low = 0.1, high = 1 }': "unknown key budget.patience",
    '[fixed]\ndevice = "cuda"\n[params]\nlr = { type = "float", low = 0.1, high = 1 }': "set by the sweep itself",
    '[params]\nsteps = { type = "int", low = 0, high = 3 }': "steps must be positive",
    "[params]\n": "nothing to search",
    # values of the wrong type, caught before any trial rather than failing every one
    '[fixed]\ncompile = "yes"' + LR: "compile must be true or false, got 'yes'",
    '[budget]\ntarget = "high"' + LR: "target must be a finite number, got 'high'",
    '[fixed]\nmax_seconds = nan' + LR: "max_seconds must be a finite number, got nan",
    '[fixed]\ntask_options = { foo = 1 }' + LR: "copy: unknown option(s) foo; it takes alphabet, length",
    '[fixed]\ntask_options = { length = 2.5 }' + LR: "copy option length must be an integer, got 2.5",
    '[params]\nbatch_size = { type = "float", low = 32, high = 64 }': "batch_size must be an integer, got 32",
    '[params]\nbatch_size = { type = "int", low = 32, high = 64, step = 0.5 }': "needs a whole step, got 0.5",
    '[params]\nn_heads = { type = "categorical", choices = [4, 3, 4] }': "must be divisible by n_heads (3)",
    '[params]\ndropout = { type = "categorical", choices = ["a"] }': "dropout must be a finite number, got 'a'",
}


@pytest.mark.parametrize("text, message", list(BAD_SPACES.items()))
def test_bad_space_file_names_the_problem(text, message, tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(text)
    result = runner.invoke(app, ["sweep", "copy", "--space", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "space.toml" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.toml"]


def test_workers_are_sized_from_the_cpus_this_process_may_use(monkeypatch):
    """A container or `taskset` gives a process fewer CPUs than the host has: auto counts those."""
    from thinker.cli.sweep import place_workers

    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the host's cores
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert place_workers(torch.device("cpu"), [], "auto", None).workers == 1
    assert place_workers(torch.device("cpu"), [], "1", 2).threads == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr("thinker.machine.cpu_quota", lambda: 2.5)  # cgroup cpu.max "250000 100000"
    assert place_workers(torch.device("cpu"), [], "auto", None).workers == 2


def test_placement_of_trials_on_devices():
    from thinker.sweeps.workers import plan_workers

    auto = plan_workers("cpu", [], "auto", cpu_count=2)
    assert (auto.workers, auto.threads) == (2, 1)
    gpu = plan_workers("cuda", [0], "auto", cpu_count=16, free_gib=[9.0])
    assert (gpu.workers, gpu.gpus) == (4, [0])  # 4 by memory: 9 GiB at 2 GiB a trial
    assert plan_workers("cuda", [0, 1], "3", cpu_count=16).workers == 6
    result = runner.invoke(app, ["sweep", "copy", "--trials-per-device", "many"])
    assert result.exit_code == 2 and "--trials-per-device takes a positive number or auto" in result.stderr
    for gpus, message in (("0,x", "--gpus takes integers like 0,1; got '0,x'"), ("-1", "--gpus must be at least 0")):
        result = runner.invoke(app, ["sweep", "copy", "--gpus", gpus])
        assert result.exit_code == 2 and message in result.stderr


def test_eval_and_predict_a_trial_by_study_and_by_mlflow_run():
    assert sweep("--trials", "1", "--pruner", "none").exit_code == 0
    trial = study().trials[0]
    result = runner.invoke(app, ["eval", f"copy:{trial.number}", "--exhaustive", "--long", "0", "--mlflow"])
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert summary["mode"] == "exhaustive" and summary["all_problems"] == 5 ** 4
    run_id = record(trial).mlflow_run_id
    assert summary["mlflow_run_id"] == run_id
    client, _, _ = runs()
    logged = client.get_run(run_id).data.metrics
    assert logged["exhaustive_all_exact_match"] == pytest.approx(summary["all_exact_match"])
    result = runner.invoke(app, ["predict", run_id, "0 1 2 3", "--json"])
    assert result.exit_code == 0, result.output
    assert last_json(result)["expected"] == "0 1 2 3"
    result = runner.invoke(app, ["eval", "copy:99"])
    assert result.exit_code == 2 and "study 'copy' has no trial 99" in result.stderr


def test_invocations_starting_together_keep_each_others_parent_runs():
    """Each parent run is its own study attribute: two invocations writing at once lose neither id."""
    from thinker.sweeps.coordinator import ParentRun, parent_runs  # noqa: PLC0415
    from thinker.sweeps.settings import SweepSettings  # noqa: PLC0415
    from thinker.sweeps.space import load_space  # noqa: PLC0415
    from thinker.sweeps.tracking import Tracker  # noqa: PLC0415

    settings = SweepSettings(task="copy", trials=1, study="s", storage="sqlite:///optuna.db", space=load_space(SPACE),
                             tracking_uri=f"sqlite:///{Path.cwd() / 'mlflow.db'}", experiment="e")
    first = optuna.create_study(study_name="s", storage="sqlite:///optuna.db")
    second = optuna.load_study(study_name="s", storage="sqlite:///optuna.db")
    tracker = Tracker(settings.tracking_uri, settings.experiment)
    a, b = ParentRun(tracker, settings, first), ParentRun(tracker, settings, second)
    assert sorted(parent_runs(first)) == sorted([a.run_id, b.run_id])


def test_report_on_80_columns_wraps_between_parameters_not_inside_one(monkeypatch):
    params = {"batch_size": 64, "lr": 0.001325, "steps": 2, "latent": 3, "d_model": 64, "n_layers": 1,
              "clip_norm": 2.245, "warmup_samples": 4096}
    distributions = {k: optuna.distributions.CategoricalDistribution([v]) for k, v in params.items()}
    made = optuna.create_study(study_name="copy", storage="sqlite:///optuna.db", direction="maximize")
    made.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=0.5,
                                             user_attrs=TrialRecord(exact_match=0.5, samples=4096,
                                                                    train_seconds=3.2).attrs()))
    monkeypatch.setenv("COLUMNS", "80")
    result = runner.invoke(app, ["report", "copy"])
    assert result.exit_code == 0, result.output
    assert all(f"{k}={v}" in result.stdout for k, v in params.items()), result.stdout
