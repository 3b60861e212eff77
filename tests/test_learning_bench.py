"""The learning benchmarks' machinery on tiny runs: `pytest tests/test_learning_bench.py`."""

import json
import subprocess
import sys

import pytest

from thinker.bench.learning import run_many
from thinker.bench.thinking import VARIANTS, main, plot, summarise

TINY = {"task": "copy", "task_options": {"alphabet": 2, "length": 4}, "target": 1.0, "device": "cpu",
        "max_samples": 2048, "eval_every": 1024, "eval_size": 128, "long_eval_size": 0, "d_model": 16,
        "n_heads": 2, "n_layers": 1}


def test_runs_report_samples_to_target_per_seed():
    rows = run_many([{**TINY, "name": "copy-binary", "seed": seed} for seed in (0, 1)], jobs=1, threads=1)
    assert [r["seed"] for r in rows] == [0, 1] and all(r["name"] == "copy-binary" for r in rows)
    for r in rows:
        assert r["samples"] <= 2048 and (r["samples_to_target"] is not None) == r["reached"]
        assert r["params"] > 0 and r["steps"] == 2 and r["latent"] == 4
    json.dumps(rows)  # the report is JSON


def test_thinking_summary_and_plot(tmp_path):
    rows = [{"name": "roll", "variant": variant, "seed": seed, "target": 0.99, "reached": seed != 1,
             "samples_to_target": 8192 * (i + 1) if seed != 1 else None, "samples": 50_000,
             "exact_match": 0.999 if seed != 1 else 0.5, "train_seconds": 10.0, "params": 1000}
            for i, variant in enumerate(VARIANTS) for seed in (0, 1)]
    summary = summarise(rows)
    assert [s["variant"] for s in summary] == list(VARIANTS)
    assert summary[0]["reached"] == 1 and summary[0]["median_samples_to_target"] == 8192
    assert summary[0]["mean_exact_match"] == (0.999 + 0.5) / 2
    path = tmp_path / "thinking.png"
    plot({"rows": rows, "seeds": [0, 1], "machine": "test"}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # joining earlier reports: the plot goes beside --json, never over the committed picture
    (tmp_path / "a.json").write_text(json.dumps({"rows": rows[:4], "seeds": [0, 1], "machine": "test"}))
    (tmp_path / "b.json").write_text(json.dumps({"rows": rows[4:], "seeds": [0, 1], "machine": "test"}))
    out = tmp_path / "new"  # a folder that does not exist yet
    main(["--from-json", f"{tmp_path / 'a.json'},{tmp_path / 'b.json'}", "--json", str(out / "joined.json")])
    joined = json.loads((out / "joined.json").read_text())
    assert joined["rows"] == rows and len(joined["summary"]) == len(VARIANTS)
    assert (out / "joined.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("module, args, message", [
    ("learning", ["--seeds", "0,x"], "bench: error: --seeds takes integers like 0,1,2; got '0,x'"),
    ("thinking", ["--jobs", "two"], "bench: error: argument --jobs: must be a whole number above 0, got 'two'"),
    ("thinking", ["--colour"], "bench: error: unrecognized arguments: --colour"),
    ("thinking", ["--from-json", "/no/such.json"], "bench: error: --from-json: [Errno 2] No such file or directory: "
                                                   "'/no/such.json'"),
])
def test_bad_input_is_one_line_and_exit_2(module, args, message):
    proc = subprocess.run([sys.executable, "-m", f"thinker.bench.{module}", *args], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr == message + "\n"


def test_lengths_summary_table_and_plot(tmp_path):
    """Per seed figures joined per cell; a cell the model could not score stays, with no mean of its own."""
    from thinker.bench.lengths import plot as lengths_plot
    from thinker.bench.lengths import summarise as lengths_summarise
    from thinker.bench.lengths import table as lengths_table

    def cells(seed):
        return [{"length": 3, "asked": 4, "steps": 4, "exact_match": 0.9 + seed / 100},
                {"length": 6, "asked": "auto", "steps": 8, "exact_match": 0.5},
                {"length": 12, "asked": 4, "steps": None, "exact_match": None, "error": "no positions"}]
    rows = [{"task": "addition", "variant": "local", "seed": seed, "cells": cells(seed)} for seed in (0, 1)]
    summary = lengths_summarise(rows)
    assert [(s["length"], s["asked"]) for s in summary] == [(3, 4), (6, "auto"), (12, 4)]
    assert summary[0]["by_seed"] == {0: 0.9, 1: 0.91} and summary[0]["mean"] == pytest.approx(0.905)
    assert summary[2]["mean"] is None and summary[0]["min"] == 0.9
    report = {"rows": rows, "summary": summary, "seeds": [0, 1], "machine": "test"}
    assert lengths_table(report).row_count == 3
    lengths_plot(report, tmp_path / "lengths.png")
    assert (tmp_path / "lengths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
