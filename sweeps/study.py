"""The study: create it (or check that an existing one is the same sweep), load it, count its trials.

    >>> settings = SweepSettings(task="copy", trials=3, study="copy", storage="sqlite:///optuna.db",
    ...                          tracking_uri="sqlite:///mlflow.db", experiment="thinker-copy", space="copy")
    >>> study = create_study(settings, open_storage(settings.storage))  # doctest: +SKIP
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from thinker.errors import ThinkerError
from thinker.sweeps.algorithms import optuna_pruner, optuna_sampler
from thinker.sweeps.settings import FINISHED, SweepSettings
from thinker.sweeps.space import load_space
from thinker.training import TrainConfig


class SweepError(ThinkerError):
    """A sweep that cannot start (an existing study of another task or objective, say)."""


def trial_budget(settings: SweepSettings) -> tuple[int, int]:
    """(eval_every, max_samples) of the sweep's trials, for the pruner's rungs."""
    space = load_space(settings.space)
    defaults = TrainConfig.for_task(settings.task)
    eval_every = space.budget.get("eval_every", space.fixed.get("eval_every", defaults.eval_every))
    max_samples = settings.max_samples or space.budget.get("max_samples", defaults.max_samples)
    return eval_every, max_samples


def load_study(settings: SweepSettings, storage, worker: int = 0) -> optuna.Study:
    """The study with this worker's sampler (seeded per worker) and the sweep's pruner."""
    eval_every, max_samples = trial_budget(settings)
    pruner = optuna_pruner(settings.pruner if len(settings.directions) == 1 else "none", eval_every, max_samples)
    return optuna.load_study(study_name=settings.study, storage=storage,
                             sampler=optuna_sampler(settings.sampler, settings.seed + worker), pruner=pruner)


def create_study(settings: SweepSettings, storage) -> optuna.Study:
    """Create the study, or check that the existing one is the same sweep."""
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if settings.study in names:
        study = load_study(settings, storage)
        task = study.user_attrs.get("task")
        if task not in (None, settings.task):
            raise SweepError(f"study {settings.study!r} is a {task!r} sweep; pass --study NAME for a new one")
        wanted = [d.upper() for d in settings.directions]
        if [d.name for d in study.directions] != wanted:
            raise SweepError(f"study {settings.study!r} was made for objective "
                             f"{study.user_attrs.get('objective', '?')!r}; pass --study NAME for a new one")
        return study
    eval_every, max_samples = trial_budget(settings)
    study = optuna.create_study(
        storage=storage, study_name=settings.study, directions=list(settings.directions),
        sampler=optuna_sampler(settings.sampler, settings.seed),
        pruner=optuna_pruner(settings.pruner, eval_every, max_samples), load_if_exists=True)
    for key in ("task", "objective", "sampler", "pruner", "space"):
        study.set_user_attr(key, getattr(settings, key))
    return study


def states(names) -> tuple[TrialState, ...]:
    return tuple(TrialState[name] for name in names)


def count(study: optuna.Study, names=FINISHED) -> int:
    """Trials of the study in any of the states `names`."""
    return len(study.get_trials(deepcopy=False, states=states(names)))

