"""Parameter importances (`thinker report`, the study's plot) on studies built by hand."""

import random

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from thinker.sweeps.report import importances


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
