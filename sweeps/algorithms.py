"""Optuna's samplers and pruners, built by the names in `settings.SAMPLERS` and `settings.PRUNERS`.

    >>> type(optuna_sampler("tpe", seed=0)).__name__
    'TPESampler'
    >>> type(optuna_pruner("hyperband", eval_every=1024, max_samples=8192)).__name__
    'HyperbandPruner'
"""

from __future__ import annotations

import optuna

from thinker.sweeps.settings import PRUNERS, SAMPLERS


def optuna_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """A seeded sampler: `tpe` (multivariate, constant liar), `random`, `gp` or `cmaes`."""
    assert name in SAMPLERS, name
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def optuna_pruner(name: str, eval_every: int, max_samples: int) -> optuna.pruners.BasePruner:
    """A pruner whose rungs sit on the trials' evaluation grid (the resource is samples seen)."""
    assert name in PRUNERS, name
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2 * eval_every)
    if name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.HyperbandPruner(min_resource=eval_every, max_resource=max_samples, reduction_factor=3)
