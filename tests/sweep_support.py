"""Helpers for the sweep tests: each test runs in its own empty directory with the default stores."""

import json
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from thinker.cli import app
from thinker.sweeps.trial import TrialRecord

SPACE = str(Path(__file__).parent / "fixtures" / "tiny_copy.toml")
runner = CliRunner()


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def sweep(*args):
    """In this process (one worker, so monkeypatched faults apply) unless --jobs says otherwise."""
    workers = [] if {"--jobs", "--trials-per-device"} & set(args) else ["--jobs", "1"]
    result = runner.invoke(app, ["sweep", "copy", "--space", SPACE, "--device", "cpu", *workers, *args])
    assert "Traceback" not in result.output
    return result


def last_json(result):
    return json.loads(result.stdout.strip().splitlines()[-1])


def study(name="copy"):
    return optuna.load_study(study_name=name, storage="sqlite:///optuna.db")


def runs(experiment="thinker-copy"):
    client = MlflowClient(f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id])
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def record(trial) -> TrialRecord:
    return TrialRecord.from_trial(trial)


def finished(s):
    return [t for t in s.trials if t.state.name in ("COMPLETE", "PRUNED")]
