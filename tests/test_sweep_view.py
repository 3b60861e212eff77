"""What a user sees of `thinker sweep`, in a terminal and piped: `pytest tests/test_sweep_view.py`."""

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thinker.cli import app
from thinker.cli.sweep_view import Forecast, duration
from thinker.sweeps.standing import Ended, Running, Standing, eta_seconds, expected_finished

SPACE = Path(__file__).parent / "fixtures" / "tiny_copy.toml"
LIBRARY_LINES = re.compile(r"INFO mlflow|INFO optuna|Creating initial MLflow|UserWarning|ExperimentalWarning|alembic")


def test_piped_output_is_quiet_has_records_and_ends_with_one_json_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, ["sweep", "copy", "--space", str(SPACE), "--device", "cpu", "--jobs", "1",
                                      "--trials", "3", "--pruner", "none"])
    assert result.exit_code == 0, result.output
    assert not LIBRARY_LINES.search(result.output), result.output
    err = result.stderr
    assert re.search(r"#0 complete value [\d.]+ in \d+s", err) and "#2 complete" in err
    assert re.search(r"finished: 3/3 trials finished in \d+s: 3 complete, 0 pruned, 0 failed; best value", err)
    log = re.search(r"MLflow's and Optuna's own messages: (\S+)", err).group(1)
    assert Path(log).is_file() and "mlflow" in Path(log).read_text()
    assert "next:" in err and f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db" in err
    assert "/#/experiments/" in err and "thinker report copy" in err and "--from-trial copy:" in err
    lines = result.stdout.strip().splitlines()
    assert json.loads(lines[-1])["finished"] == 3 and "\x1b[" not in result.stdout


def test_a_terminal_shows_the_running_trials_live(tmp_path):
    """Drive the CLI with a pseudo-terminal as stderr, as a user at a terminal runs it."""
    slow = tmp_path / "slow.toml"
    slow.write_text(SPACE.read_text().replace("target = 1.0", "target = 2.0").replace("6144", "8192"))
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "140", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-m", "thinker", "sweep", "copy", "--space", str(slow), "--device", "cpu",
                             "--jobs", "1", "--trials", "2", "--pruner", "none"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    screen, seen_live = b"", False
    deadline = time.time() + 180
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                screen += os.read(master, 65536)
            except OSError:
                break
        text = screen.decode(errors="replace")
        if proc.poll() is None and re.search(r"#0 lr=\S+ .*exact match", text):
            seen_live = True  # a running trial's line, drawn while the sweep is still running
        if proc.poll() is not None and not ready:
            break
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))  # colours and cursor moves
    assert proc.returncode == 0, text[-2000:]
    assert seen_live, text[-2000:]
    assert "ETA" in text and "#0 complete" in text and not LIBRARY_LINES.search(text)
    assert json.loads(out.strip().splitlines()[-1])["finished"] == 2


def test_eta_counts_complete_and_pruned_trials_apart():
    ended = [Ended(0, "COMPLETE", 1.0, 100.0, None, True), Ended(1, "PRUNED", 0.2, 20.0, None, True),
             Ended(2, "PRUNED", 0.1, 20.0, None, True), Ended(3, "COMPLETE", 0.9, 100.0, None, False)]
    running = [Running(4, {}, 1000, 8000, 0.5, 900.0, "cpu", 30.0)]
    now = Standing(finished=4, best=(1.0, 0), running=running, ended=ended)
    per_trial = (2 / 3) * 20.0 + (1 / 3) * 100.0  # this invocation's own trials: 1 complete, 2 pruned
    assert eta_seconds(now, target=10, workers=1) == pytest.approx(per_trial * 5 + (per_trial - 30.0))
    assert eta_seconds(now, target=10, workers=2) == pytest.approx((per_trial * 5 + (per_trial - 30.0)) / 2)
    assert eta_seconds(Standing(finished=0, best=None), target=10, workers=1) is None


def test_the_bar_counts_to_what_the_study_will_hold():
    """Trials running when the target is reached run to their end: 48 finished and 4 running of 50 end at 52,
    and the bar says 52 rather than passing its end at '52/50'."""
    running = [Running(n, {}, 10, 100, None, None, "cpu", 1.0) for n in range(4)]
    assert expected_finished(Standing(finished=48, best=None, running=running), target=50) == 52
    assert expected_finished(Standing(finished=40, best=None, running=running), target=50) == 50
    assert expected_finished(Standing(finished=73, best=None), target=64) == 73


def test_forecast_reports_predicted_against_actual(monkeypatch):
    clock = iter([0.0, 10.0, 75.0])
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    forecast = Forecast()
    forecast.note(50.0)  # at 10 s: 50 s to go
    assert forecast.summary() == f"ETA: predicted {duration(60)} in all (after {duration(10)}), took {duration(75)}"
