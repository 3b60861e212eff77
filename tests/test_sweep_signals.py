"""Stopping a sweep at every moment, by every signal: `pytest tests/test_sweep_signals.py`.

Whatever the moment (mid-trial, study set-up, wrap-up) and whatever the signal (SIGINT, SIGTERM,
SIGKILL), no MLflow run and no Optuna trial is left RUNNING, and the next invocation resumes.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sweep_support import SPACE, finished, in_tmp, last_json, record, runs, study, sweep  # noqa: F401

pytestmark = pytest.mark.usefixtures("in_tmp")


def slow_space(tmp_path) -> Path:
    """Trials that never reach their target, so one is surely running when the signal comes."""
    slow = tmp_path / "slow.toml"
    slow.write_text(Path(SPACE).read_text().replace("target = 1.0", "target = 2.0")
                    .replace("max_samples = 6144", "max_samples = 10000000"))
    return slow


def start_sweep(tmp_path, space, env=None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "thinker", "sweep", "copy", "--space", str(space), "--device", "cpu",
           "--trials", "2", "--pruner", "none", "--trials-per-device", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    # A shell may start background jobs with SIGINT ignored; give the sweep the default, as a terminal would.
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_a_running_trial(proc) -> None:
    deadline = time.time() + 60
    while time.time() < deadline and not _a_trial_is_running():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)
    time.sleep(1.0)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_trial_leaves_no_running_run_and_the_next_invocation_resumes(signum, tmp_path):
    proc = start_sweep(tmp_path, slow_space(tmp_path))
    wait_for_a_running_trial(proc)
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "rerun the same command to resume" in err
    assert "1 failed (1 of them interrupted)" in err
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["status"] == "interrupted" and doc["failed"] == doc["interrupted"] == 1
    _, parents, children = runs()
    assert [p.info.status for p in parents] == ["KILLED"]
    assert [c.info.status for c in children] == ["KILLED"]
    assert [t.state.name for t in study().trials] == ["FAIL"]
    assert record(study().trials[0]).fail_reason == "interrupted"
    result = sweep("--trials", "2", "--pruner", "none")  # the quick space: resumes to 2 finished trials
    assert result.exit_code == 0, result.output
    assert len(finished(study())) == 2


def test_sigkill_mid_trial_then_rerun_finishes_the_study_on_sqlite(tmp_path, monkeypatch):
    """Nothing catches SIGKILL: the rerun finds the dead trial by its missing heartbeat."""
    beats = {"THINKER_HEARTBEAT_SECONDS": "1", "THINKER_GRACE_SECONDS": "2"}
    proc = start_sweep(tmp_path, slow_space(tmp_path), env=beats)
    wait_for_a_running_trial(proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    killed = next(t for t in study().trials if t.state.name == "RUNNING")
    time.sleep(3)  # past the grace period
    for key, value in beats.items():
        monkeypatch.setenv(key, value)
    result = sweep("--trials", "2", "--pruner", "none")
    assert result.exit_code == 0, result.output
    trials = {t.number: t for t in study().trials}
    assert trials[killed.number].state.name == "FAIL" and len(finished(study())) >= 2
    client, parents, children = runs()
    assert all(r.info.status != "RUNNING" for r in parents + children)
    assert client.get_run(record(killed).mlflow_run_id).info.status == "KILLED"
    assert sorted(p.info.status for p in parents) == ["FINISHED", "KILLED"]  # the dead invocation's parent


def twice(signum):
    """Deliver `signum` to this process twice: the first asks for a stop, the second cuts it short."""
    def fire(*args, **kwargs):
        signal.raise_signal(signum)
        signal.raise_signal(signum)
    return fire


def test_signals_during_the_wrap_up_end_the_parent_and_keep_the_summary(monkeypatch):
    import thinker.sweeps.coordinator as coordinator

    monkeypatch.setattr(coordinator, "render_plots", twice(signal.SIGTERM))
    result = sweep("--trials", "1", "--pruner", "none")
    assert result.exit_code == 130, result.output
    doc = last_json(result)
    assert doc["status"] == "interrupted" and doc["finished"] == 1
    _, parents, children = runs()
    assert [p.info.status for p in parents] == ["KILLED"] and [c.info.status for c in children] == ["FINISHED"]


def test_a_signal_while_the_study_is_set_up_starts_no_trial(monkeypatch):
    import thinker.sweeps.coordinator as coordinator

    real = coordinator.create_study

    def create_study(*args):
        signal.raise_signal(signal.SIGTERM)
        return real(*args)

    monkeypatch.setattr(coordinator, "create_study", create_study)
    result = sweep("--trials", "1", "--pruner", "none")
    assert result.exit_code == 130, result.output
    assert last_json(result)["status"] == "interrupted" and study().trials == []
    _, parents, children = runs()
    assert [p.info.status for p in parents] == ["KILLED"] and children == []


def _a_trial_is_running() -> bool:
    try:
        return any(t.state.name == "RUNNING" and record(t).mlflow_run_id for t in study().trials)
    except Exception:  # no study yet
        return False
