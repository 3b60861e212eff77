"""A sweep's best that means something: the final score at the target, its tie-break, the Wilson interval
and the end-of-sweep check of the winner on every problem. `pytest tests/test_sweep_final.py`.
"""

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.sweep_support import SPACE, in_tmp, last_json, record, runner, runs, study, sweep  # noqa: F401
from thinker.cli import app
from thinker.sweeps import final as final_module
from thinker.sweeps.final import Score, wilson
from thinker.sweeps.objective import trial_values, unchecked

pytestmark = pytest.mark.usefixtures("in_tmp")
COPY_PROBLEMS = 5**4  # the tiny space's task: copy, alphabet 5, length 4


@pytest.fixture
def easy_space(tmp_path):
    """The tiny space with a target every trial reaches."""
    path = tmp_path / "easy.toml"
    path.write_text(Path(SPACE).read_text().replace("target = 1.0", "target = 0.5"))
    return str(path)


def test_wilson_interval_matches_the_formula():
    low, high = wilson(2048, 2048)
    assert high == 1.0 and low == pytest.approx(0.998128, abs=1e-6)  # 1.0 on 2,048: below ~0.19% wrong
    low, high = wilson(1_002_001 - 625, 1_002_001)
    assert low < (1_002_001 - 625) / 1_002_001 < high and high - low == pytest.approx(9.8e-5, rel=0.05)
    assert Score(0.999, 100_000, 100, False).interval() == wilson(99_900, 100_000)
    assert Score(1.0, 625, 0, True).interval() is None  # every problem scored: nothing to estimate


def test_ties_on_the_final_score_go_to_fewer_samples_and_one_problem_outranks_speed():
    result = SimpleNamespace(exact_match=1.0, samples=40_000, train_seconds=9.0)
    same = Score(0.9999, 100_000, 10, False)
    fast = trial_values("accuracy", SimpleNamespace(**vars(result), samples_to_target=16_384), 150_000, same)
    slow = trial_values("accuracy", SimpleNamespace(**vars(result), samples_to_target=49_152), 150_000, same)
    assert same.exact_match > fast > slow
    better = Score(0.99991, 100_000, 9, False)  # one problem more right, at the whole budget
    assert trial_values("accuracy", SimpleNamespace(**vars(result), samples_to_target=None), 150_000, better) > fast


def test_a_trial_that_spent_its_budget_unchecked_is_scored_on_every_problem():
    cfg = SimpleNamespace(exhaustive_check=True, target=1.0)
    unverified = SimpleNamespace(samples_to_target=None, exact_match=1.0, exhaustive=False)
    assert unchecked(cfg, unverified)
    assert not unchecked(cfg, SimpleNamespace(**{**vars(unverified), "exact_match": 0.9995}))  # below the target
    assert not unchecked(cfg, SimpleNamespace(**{**vars(unverified), "samples_to_target": 90_112}))  # passed
    assert not unchecked(SimpleNamespace(exhaustive_check=False, target=1.0), unverified)
    # scored whole, its value ranks below a trial that passed its check in fewer samples, and above a wrong one
    passed = trial_values("accuracy", SimpleNamespace(exact_match=1.0, samples=49_152, samples_to_target=49_152),
                          300_000, Score(1.0, 1_002_001, 0, True))
    budget = SimpleNamespace(exact_match=1.0, samples=300_032, samples_to_target=None)
    right = trial_values("accuracy", budget, 300_000, Score(1.0, 1_002_001, 0, True))
    wrong = trial_values("accuracy", budget, 300_000, Score(1_002_000 / 1_002_001, 1_002_001, 1, True))
    assert passed > right > wrong


def test_a_trial_at_the_target_is_scored_on_every_problem_and_that_is_its_value(easy_space):
    result = sweep("--trials", "2", "--pruner", "none", "--space", easy_space)
    assert result.exit_code == 0, result.output
    s = study()
    at_target = [t for t in s.trials if t.state.name == "COMPLETE" and record(t).exact_match >= 0.5]
    assert at_target
    for t in at_target:
        final = Score(**record(t).final)
        assert final.problems == COPY_PROBLEMS and final.exhaustive  # a small task: every problem, on a CPU
        assert final.exact_match - 1 / final.problems < t.value <= final.exact_match
    _, _, children = runs()
    scored = [r.data.metrics for r in children if "scored_problems" in r.data.metrics]
    assert scored and all(m["scored_problems"] == COPY_PROBLEMS for m in scored)
    assert all(m["final_eval_problems"] == 256 for m in scored)  # the held-out figure's problems, too


def test_a_large_task_is_scored_on_a_held_out_sample_with_its_interval(easy_space, monkeypatch):
    monkeypatch.setattr(final_module, "CPU_EXHAUSTIVE", 0)  # as for a task of millions of problems on a CPU
    monkeypatch.setattr(final_module, "FINAL_SAMPLE", 40)
    result = sweep("--trials", "1", "--pruner", "none", "--space", easy_space)
    assert result.exit_code == 0, result.output
    final = Score(**record(study().best_trial).final)
    assert final.problems == 40 and not final.exhaustive
    summary = last_json(result)
    assert summary["best_problems"] == 40 and summary["best_low"] < summary["best_exact_match"] <= summary["best_high"]
    assert "on 40 held-out problems (95% " in summary["best_scored"]


def test_the_winner_is_checked_on_every_problem_in_summary_parent_run_and_report(easy_space, monkeypatch):
    monkeypatch.setattr(final_module, "CPU_EXHAUSTIVE", 0)  # its final score is a sample: the check scores all
    monkeypatch.setattr(final_module, "FINAL_SAMPLE", 40)
    result = sweep("--trials", "2", "--pruner", "none", "--space", easy_space)
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert summary["best_verified_problems"] == COPY_PROBLEMS
    wrong = summary["best_verified_wrong"]
    expected = (f"right on all {COPY_PROBLEMS} problems" if not wrong else
                f"wrong on {wrong} of {COPY_PROBLEMS} problems: see `thinker eval copy:{summary['best_trial']} "
                "--exhaustive`")
    assert summary["best_verdict"] == expected
    assert f"on every problem: {expected}" in result.stderr
    _, parents, _ = runs()
    assert parents[0].data.tags["best_verdict"] == expected
    assert parents[0].data.metrics["best_verified_problems"] == COPY_PROBLEMS
    report = runner.invoke(app, ["report", "copy"])
    assert report.exit_code == 0, report.output
    assert expected in " ".join(report.stdout.split())
    assert last_json(report)["best_verdict"] == expected
