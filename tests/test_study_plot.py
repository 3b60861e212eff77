"""The study's picture (`thinker report --plot`, `plots/study.png` on a sweep's parent run) and its
parameter importances, on studies built by hand: which points each trial's curve has, that every kind
of study draws, and that "what mattered" ranks what raises exact match."""

import gc
import random
import warnings

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from thinker.sweeps.plots import curves, render, render_plots
from thinker.sweeps.report import importances
from thinker.sweeps.trial import TrialRecord

PNG = b"\x89PNG\r\n\x1a\n"
LR = {"lr": FloatDistribution(1e-4, 1e-2, log=True)}


def quietly(draw, *args):
    """What `draw` returns; it must warn of nothing (a picture drawn with a warning is drawn wrong).
    Only the drawing's own warnings count: the ResourceWarnings of other tests' garbage, collected
    while it draws, do not."""
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drawn = draw(*args)
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == []
    return drawn


def study_of(objective: str, trials: list[dict], directions=("maximize",)) -> optuna.Study:
    study = optuna.create_study(directions=list(directions))
    study.set_user_attr("objective", objective)
    study.set_user_attr("task", "addition")
    for i, t in enumerate(trials):
        study.add_trial(create_trial(params={"lr": 1e-3 * (1 + i)}, distributions=LR, **t))
    return study


def test_a_curve_is_what_the_trial_trained_and_reads_as_exact_match():
    study = study_of("accuracy", [
        # stopped at its target after 16k samples; the pruner saw its value repeated up to the budget
        dict(state=TrialState.COMPLETE, value=1.0, user_attrs=TrialRecord(samples=16384).attrs(),
             intermediate_values={8192: 0.5, 16384: 1.0, 24576: 1.0, 32768: 1.0}),
        dict(state=TrialState.PRUNED, user_attrs=TrialRecord(samples=8192).attrs(), intermediate_values={8192: 0.1}),
        dict(state=TrialState.FAIL, user_attrs=TrialRecord().attrs()),  # failed before its first evaluation: no curve
    ])
    got = curves(study)
    assert [(c.trial, c.state, c.samples, c.exact_match) for c in got] == [
        (0, "COMPLETE", (8192, 16384), (0.5, 1.0)),
        (1, "PRUNED", (8192,), (0.1,)),
    ]


def test_other_objectives_report_one_minus_exact_match_and_the_curve_turns_it_back():
    study = study_of("time-to-target", [
        dict(state=TrialState.COMPLETE, value=16384.0, user_attrs=TrialRecord(samples=16384).attrs(),
             intermediate_values={8192: 0.75, 16384: 0.0}),
    ], directions=("minimize",))
    assert curves(study)[0].exact_match == (0.25, 1.0)


@pytest.mark.parametrize("objective, directions, trials", [
    ("accuracy", ("maximize",), [
        dict(state=TrialState.COMPLETE, value=v, user_attrs=TrialRecord(samples=8192 * (i + 1)).attrs(),
             intermediate_values={8192 * (k + 1): v * (k + 1) / (i + 1) for k in range(i + 1)})
        for i, v in enumerate([0.3, 0.9, 0.6, 1.0])] + [
        dict(state=TrialState.PRUNED, user_attrs=TrialRecord(samples=8192).attrs(), intermediate_values={8192: 0.05}),
        dict(state=TrialState.FAIL)]),
    ("time-to-target", ("minimize",), [
        dict(state=TrialState.COMPLETE, value=v, user_attrs=TrialRecord(samples=int(v)).attrs(),
             intermediate_values={8192: 0.5})
        for v in (40960.0, 24576.0)]),
    ("pareto-samples", ("maximize", "minimize"), [
        dict(state=TrialState.COMPLETE, values=v) for v in ([0.9, 20000.0], [1.0, 50000.0], [0.8, 60000.0])]),
    ("accuracy", ("maximize",), [dict(state=TrialState.FAIL)]),  # nothing finished yet
])
def test_every_kind_of_study_draws(objective, directions, trials):
    png = quietly(render, study_of(objective, trials, directions))
    assert png.startswith(PNG) and len(png) > 10_000


@pytest.mark.parametrize("directions", [("maximize",), ("maximize", "minimize")])
def test_importances_rank_what_raises_exact_match(directions):
    """`a` decides the best trials, `b` the worst: what mattered is `a`, with one objective or two."""
    rng = random.Random(0)
    space = {"a": FloatDistribution(0, 1), "b": FloatDistribution(0, 1)}
    study = optuna.create_study(directions=list(directions))
    for _ in range(200):
        a, b = rng.random(), rng.random()
        exact_match = 1.0 if a > 0.8 else 0.0 if b < 0.2 else 0.5
        values = [exact_match, 1.0][:len(directions)]
        study.add_trial(create_trial(params={"a": a, "b": b}, distributions=space, values=values))
    ranked = importances(study)
    assert list(ranked) == ["a", "b"] and ranked["a"] > 0.8, ranked


def test_trials_all_alike_give_no_importances_rather_than_equal_ones():
    """Every trial of an easy task at 100%: nothing to tell the parameters apart by."""
    space = {"a": FloatDistribution(0, 1), "b": FloatDistribution(0, 1)}
    study = optuna.create_study(direction="maximize")
    for a, b in ((0.1, 0.2), (0.7, 0.3), (0.4, 0.9), (0.5, 0.5)):
        study.add_trial(create_trial(params={"a": a, "b": b}, distributions=space, value=1.0))
    assert importances(study) == {}


def test_the_parent_run_gets_no_importance_plot_when_there_is_nothing_to_tell():
    alike = study_of("accuracy", [dict(state=TrialState.COMPLETE, value=1.0) for _ in range(4)])
    files = quietly(render_plots, alike)
    assert "importances.html" not in files and {"history.html", "study.png"} <= set(files)
