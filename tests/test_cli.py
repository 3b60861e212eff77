"""The CLI through Typer's CliRunner, error paths included: `pytest tests/test_cli.py`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from thinker.cli import app

runner = CliRunner()
TINY = ["--steps", "1", "--latent", "2", "--d-model", "32", "--n-heads", "2", "--n-layers", "1",
        "--batch-size", "64", "--max-samples", "8192", "--device", "cpu",
        "-o", "alphabet=5", "-o", "length=4"]


def test_length_generalisation_options_reach_the_saved_config(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "copy", *TINY, "--steps", "3", "--min-steps", "2", "--window", "2",
                                 "--max-positions", "20", "--position-jitter", "--max-samples", "512",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert (saved["min_steps"], saved["window"], saved["max_positions"], saved["position_jitter"]) == (2, 2, 20, True)
    assert torch.load(out / "model.pt")["model_config"]["max_len"] == 20


def test_tasks_lists_every_task():
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 0
    for name in ("copy", "flip", "roll", "sort", "addition", "multiply"):
        assert name in result.output


def test_train_writes_checkpoint_and_ends_with_json(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "copy", *TINY, "--target", "1.0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("task", "exact_match", "token_accuracy", "samples", "train_seconds", "data_ms",
                "forward_ms", "backward_ms", "restarts"):
        assert key in summary
    assert summary["task"] == "copy" and summary["exact_match"] == 1.0
    checkpoint = torch.load(out / "model.pt")
    assert checkpoint["train_config"]["task_options"] == {"alphabet": 5, "length": 4}
    assert json.loads((out / "config.json").read_text())["batch_size"] == 64
    assert json.loads((out / "result.json").read_text())["history"]
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")

    before = (out / "model.pt").read_bytes()
    result = runner.invoke(app, ["train", "copy", *TINY, "--max-samples", "1024", "--out", str(out)])
    assert result.exit_code == 2 and (out / "model.pt").read_bytes() == before  # a trained model is kept
    assert result.stderr.strip() == (f"thinker: error: --out '{out}' already holds a trained model (model.pt); "
                                     "choose another folder or pass --overwrite")
    result = runner.invoke(app, ["train", "copy", *TINY, "--max-samples", "1024", "--out", str(out), "--overwrite"])
    assert result.exit_code == 0 and (out / "model.pt").read_bytes() != before


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("time.strftime", lambda fmt: "20261129-120000")
    for _ in range(2):
        result = runner.invoke(app, ["train", "copy", *TINY, "--max-samples", "1024"])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["copy-20261129-120000", "copy-20261129-120000-2"]



def test_curves_show_exhaustive_checks_and_a_loss_that_reached_zero(tmp_path):
    from types import SimpleNamespace  # noqa: PLC0415

    from thinker.cli.curves import draw_curves  # noqa: PLC0415

    history = [{"samples": 8192 * i, "seconds": 2.0 * i, "loss": 0.0 if i == 4 else 1.0 / i,
                "token_accuracy": min(1.0, 0.3 * i), "exact_match": min(1.0, 0.25 * i),
                "length_exact_match": 0.05 * i} for i in range(1, 5)]
    history[2]["exhaustive"], history[3]["exhaustive"] = 0.0, 1.0  # one check failed, the next passed
    result = SimpleNamespace(task="addition", history=history, best_samples=32768, exact_match=1.0,
                             samples=32768, train_seconds=8.0, stop_reason="target")
    draw_curves(tmp_path / "curves.png", result, target=1.0)
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")

@pytest.mark.parametrize("args, message", [
    (["train", "divide"], "unknown task 'divide'; choose from: copy, flip"),
    (["train", "copy", "--batch-size", "0"], "batch_size must be positive"),
    (["train", "copy", "--steps", "0"], "steps must be positive"),
    (["train", "copy", "--steps", "-2"], "steps must be positive"),
    (["train", "copy", "--latent", "-1"], "latent must not be negative"),
    (["train", "copy", "--lr", "0"], "lr must be positive"),
    (["train", "copy", "--lr", "-0.1"], "lr must be positive"),
    (["train", "copy", "--max-samples", "0"], "max_samples must be positive"),
    (["train", "copy", "--device", "tpu"], "unknown device 'tpu'"),
    (["train", "copy", "-o", "alphabet=1"], "alphabet must be at least 2"),
    (["train", "copy", "-o", "colour=red"], "copy:"),
    (["train", "copy", "-o", "novalue"], "task option must be KEY=VALUE"),
    (["train", "copy", "--steps", "2", "--min-steps", "3"], "min_steps must be in 0..steps (2), got 3"),
    (["train", "copy", "--window", "-1"], "window must not be negative"),
    (["train", "copy", "--max-positions", "-1"], "max_positions must not be negative"),
    (["train", "addition", "-o", "length=-1"], "length must not be negative"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    out = tmp_path / "never"
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize("args", [["train", "copy", "--out"], ["bench", "--json"], ["bench", "--profile"],
                                  ["report", "addition", "--csv"], ["report", "addition", "--plot"],
                                  ["eval", "RUN", "--csv"], ["sweep", "addition", "--space"]])
def test_an_empty_path_is_refused_not_read_as_the_current_directory(args, tmp_path, monkeypatch):
    """`--out "$RUN_DIR"` with the variable unset: Path("") is ".", and the run would land wherever it started."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*args, ""])
    assert result.exit_code == 2
    message = f"Invalid value for '{args[-1]}': an empty path (an unset variable?)"
    assert result.stderr.strip() == f"thinker: error: {message}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_ctrl_c_in_a_command_is_one_line_and_exit_130(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("thinker.cli.train.train", interrupted)
    result = runner.invoke(app, ["train", "copy", *TINY, "--out", str(tmp_path / "run")])
    assert result.exit_code == 130 and result.stderr.strip().splitlines()[-1] == "thinker: interrupted"


def test_running_out_of_gpu_memory_is_one_line_and_exit_2(tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB. GPU 0 has a total "
                                          "capacity of 79.19 GiB\nof which 3.1 GiB is free.")

    monkeypatch.setattr("thinker.cli.train.train", out_of_memory)
    result = runner.invoke(app, ["train", "copy", *TINY, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "thinker: error: out of GPU memory (CUDA out of memory. Tried to allocate 40.00 GiB. GPU 0 has a total "
        "capacity of 79.19 GiB); a smaller --batch-size, --steps or --d-model needs less")


def test_an_unexpected_error_is_one_line_and_exit_1(tmp_path, monkeypatch):
    def broken(*args, **kwargs):  # as a database driver's error reads: several lines
        raise RuntimeError("connection failed: refused\n\tIs the server running on that host?\n(Background: ...)")

    monkeypatch.delenv("THINKER_DEBUG", raising=False)
    monkeypatch.setattr("thinker.cli.train.train", broken)
    result = runner.invoke(app, ["train", "copy", *TINY, "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "thinker: internal error: RuntimeError: connection failed: refused (THINKER_DEBUG=1 shows the traceback)")
    assert "Is the server running" not in result.stderr


def test_ctrl_c_after_an_evaluation_saves_the_best_model_then_exit_130(tmp_path, monkeypatch):
    import thinker.cli.train as train_cli
    from tests.faults import error

    real_train = train_cli.train
    monkeypatch.setattr(train_cli, "train", lambda cfg, logger, **kwargs: real_train(
        cfg, logger, loss_hook=error(9000, KeyboardInterrupt), **kwargs))
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "copy", *TINY, "--max-samples", "40000", "--target", "2", "--out", str(out)])
    assert result.exit_code == 130, result.output
    assert result.stderr.strip().splitlines()[-1] == "interrupted: the best model so far is saved"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["stop_reason"] == "interrupted" and summary["best_samples"] == 8192
    assert torch.load(out / "model.pt")["train_config"]["task"] == "copy"


def test_cuda_without_gpu_is_an_error(tmp_path):
    result = runner.invoke(app, ["train", "copy", "--device", "cuda", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "no CUDA device is available" in result.stderr


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = runner.invoke(app, ["train", "copy", *TINY, "--out", str(blocker / "run")])
    assert result.exit_code == 2
    assert "cannot be written" in result.stderr
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
def test_output_directory_is_probed_not_trusted_to_os_access():
    """As root, os.access says /proc is writable; creating a file there says otherwise."""
    result = runner.invoke(app, ["train", "copy", *TINY, "--out", "/proc/nope/run"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("thinker: error: output directory '/proc/nope/run' cannot be written")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_probe_leaves_nothing_behind(tmp_path):
    from thinker.outputs import check_writable_dir, check_writable_file

    check_writable_dir(tmp_path / "a" / "b" / "c")
    existing = tmp_path / "results.json"
    existing.write_text("keep me")
    check_writable_file(existing, "--json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"] and existing.read_text() == "keep me"


def test_a_failed_save_keeps_the_trained_model(tmp_path, monkeypatch):
    import thinker.cli.train as train_command

    real_save, tried = train_command.save_checkpoint, []

    def save(out, cfg, result):
        tried.append(out)
        if len(tried) == 1:
            raise FileNotFoundError(2, "No such file or directory")  # the disk went away mid-training
        return real_save(out, cfg, result)

    monkeypatch.setattr(train_command, "save_checkpoint", save)
    result = runner.invoke(app, ["train", "copy", *TINY, "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "cannot write" in result.stderr and "the trained model is saved in" in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    rescued = Path(summary["checkpoint"])
    assert rescued.is_file() and rescued.parent == tried[1] and summary["wanted_out"] == str(tmp_path / "run")
    assert torch.load(rescued)["model"]


def test_console_entry_point_turns_usage_errors_into_one_line():
    """Through the real entry point (`python -m thinker`), click's own errors are one line too."""
    proc = subprocess.run([sys.executable, "-m", "thinker", "train", "copy", "--batch-size", "lots"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Invalid value" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "thinker", "train", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("thinker: error: unknown task")
