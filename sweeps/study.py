"""Optuna's storage and the study in it: open the one, create (or check), load, count and fail trials of the other.

    >>> type(optuna_sampler("tpe", seed=0)).__name__
    'TPESampler'
    >>> type(optuna_pruner("hyperband", eval_every=1024, max_samples=8192)).__name__
    'HyperbandPruner'
    >>> study = create_study(settings, open_storage(settings.storage))  # doctest: +SKIP

The default storage is an SQLite file in the working directory (`stores.DEFAULT_STORAGE`). Any
SQLAlchemy URL Optuna's RDB storage accepts works too (PostgreSQL for many machines). Every RDB
storage gets heartbeats, so a trial whose worker died is failed after the grace period and queued
again (`requeue`); a worker process the coordinator saw die has its trials failed and queued at once
(`fail_trials_of`). `journal:PATH` is Optuna's journal file, the storage it recommends for many
processes on one machine.
"""

from __future__ import annotations

import copy
import os
import time
import warnings

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from thinker.errors import ThinkerError, one_line
from thinker.sweeps.connections import engine_options, wait_for_connections
from thinker.sweeps.settings import PRUNERS, SAMPLERS, SweepSettings
from thinker.sweeps.stores import (
    StorageError,
    check_sqlite_store,
    check_url,
    database_error,
    journal_path,
    opened_together,
    redact,
    sqlite_path,
)
from thinker.sweeps.trial import FINISHED, TrialRecord

HEARTBEAT_SECONDS = 10  # THINKER_HEARTBEAT_SECONDS overrides
GRACE_SECONDS = 30  # THINKER_GRACE_SECONDS overrides: silence after which a running trial is dead
MAX_RETRY = 2  # how often a trial whose worker died is queued again



class SweepError(ThinkerError):
    """A sweep that cannot start (an existing study of another task or objective, say)."""


def env_seconds(name: str, default: int) -> int:
    """A whole number of seconds from the environment variable `name` (unset: `default`)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdecimal():
        raise StorageError(f"{name} must be a whole number of seconds, got {text!r}")
    return int(text)


def open_storage(url: str, heartbeat: bool = True, must_exist: bool = False):
    """An RDBStorage with heartbeats and retries; StorageError if it cannot be opened.

    `must_exist` refuses to create a new SQLite file (for commands that only read a study).
    """
    # Heartbeats are "experimental since v2.8": stable for years, and Optuna's advised way to detect
    # dead workers. Say so once here rather than warn on every worker start.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    check_url(url)
    journal = journal_path(url)
    if journal is not None:
        if must_exist and not journal.exists():
            raise StorageError(f"no study journal at {journal} (storage {url})")

        try:
            return JournalStorage(JournalFileBackend(str(journal)))
        except (OSError, ValueError) as e:  # ValueError: a file that is no journal (UnicodeDecodeError, JSON)
            raise StorageError(f"cannot open storage {url!r}: {one_line(e, 200)}") from None
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_store(path, url, "storage", must_exist, "studies", "an Optuna study database", StorageError)
        # SQLite serialises writers; wait for the lock instead of failing with "database is locked".
        engine_kwargs = {"connect_args": {"timeout": 120}}
    else:  # a database server: one pooled connection, refused ones waited for (connections.py)
        engine_kwargs = engine_options(url)
        wait_for_connections()
    beats = {}
    if heartbeat:
        beats = dict(heartbeat_interval=env_seconds("THINKER_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS),
                     grace_period=env_seconds("THINKER_GRACE_SECONDS", GRACE_SECONDS),
                     heartbeat_stale_trial_callback=requeue)
    try:
        return opened_together(lambda: RDBStorage(url, engine_kwargs=engine_kwargs, **beats))
    except Exception as e:  # sqlalchemy OperationalError and friends: unreachable, refused, bad auth
        if isinstance(e, optuna.exceptions.StorageInternalError) and e.__cause__ is not None:
            e = e.__cause__
        raise StorageError(database_error(e, url, f"storage {redact(url)!r}", f"cannot open storage {redact(url)!r}")
                           ) from None


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue a failed trial again (at most `MAX_RETRY` times) with the same parameters, as a fresh trial:
    its record (worker, run, failure) stays with the failed one. What heartbeats do with a dead worker's trial."""
    fresh = copy.deepcopy(trial)
    fresh.user_attrs = {}
    RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, fresh)


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


def load_study(settings: SweepSettings, storage, worker: int = 0) -> optuna.Study:
    """The study with this worker's sampler (seeded per worker) and the sweep's pruner (none for two
    objectives: Optuna cannot prune those)."""
    eval_every, max_samples = settings.space.rungs(settings.task, settings.max_samples)
    pruner = optuna_pruner(settings.pruner if settings.single_objective else "none", eval_every, max_samples)
    return optuna.load_study(study_name=settings.study, storage=storage,
                             sampler=optuna_sampler(settings.sampler, settings.seed + worker), pruner=pruner)


def create_study(settings: SweepSettings, storage) -> optuna.Study:
    """Create the study, or check that the existing one is the same sweep."""
    new = settings.study not in optuna.get_all_study_names(storage)
    if new:
        optuna.create_study(storage=storage, study_name=settings.study, directions=list(settings.directions),
                            load_if_exists=True)  # another invocation may be creating it too
    study = load_study(settings, storage)
    if new:
        for key, value in (("task", settings.task), ("objective", settings.objective), ("sampler", settings.sampler),
                           ("pruner", settings.pruner), ("space", settings.space.source)):
            study.set_user_attr(key, value)
        return study
    task = study.user_attrs.get("task")
    if task not in (None, settings.task):
        raise SweepError(f"study {settings.study!r} is a {task!r} sweep; pass --study NAME for a new one")
    if [d.name for d in study.directions] != [d.upper() for d in settings.directions]:
        raise SweepError(f"study {settings.study!r} was made for objective "
                         f"{study.user_attrs.get('objective', '?')!r}; pass --study NAME for a new one")
    return study


def states(names) -> tuple[TrialState, ...]:
    return tuple(TrialState[name] for name in names)


def count(study: optuna.Study, names=FINISHED) -> int:
    """Trials of the study in any of the states `names`."""
    return len(study.get_trials(deepcopy=False, states=states(names)))


def fail_trials_of(study: optuna.Study, storage, worker: str, reason: str, retry: bool = True) -> int:
    """Fail the trials still RUNNING under `worker` ("host:pid", a process known to be dead) with `reason`, and
    `retry` them: what the heartbeat does, without waiting out its grace period. `storage`: the study's."""
    study_id, failed = storage.get_study_id_from_name(study.study_name), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if TrialRecord.from_trial(trial).worker != worker:
            continue
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            for key, value in TrialRecord(fail_reason=reason).attrs().items():
                storage.set_trial_user_attr(trial_id, key, value)
            failed.append(study.tell(trial.number, state=TrialState.FAIL))
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):  # it ended after all
            pass
    for trial in failed if retry else []:
        requeue(study, trial)
    return len(failed)


def time_ask_and_tell(into: dict[str, list[float]]) -> None:
    """Record, in this process, how long each ask (`Study.ask`: the sampler and the new trial's row) and each
    tell (the storage's write of a trial's end) takes, in seconds, under `into["ask_s"]` and `into["tell_s"]`:
    the load benchmark's instrument, on the worker loop as it is."""
    for owner, name, key in ((optuna.Study, "ask", "ask_s"), (RDBStorage, "set_trial_state_values", "tell_s")):
        real = getattr(owner, name)

        def timed(*args, _real=real, _key=key, **kwargs):
            started = time.perf_counter()
            try:
                return _real(*args, **kwargs)
            finally:
                into.setdefault(_key, []).append(time.perf_counter() - started)

        setattr(owner, name, timed)
