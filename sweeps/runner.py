"""Run a sweep: create or resume the study, run workers, then summarise into the parent MLflow run.

    >>> settings = SweepSettings(task="copy", trials=3, study="copy", storage=DEFAULT_STORAGE,
    ...                          tracking_uri="sqlite:///mlflow.db", experiment="thinker-copy", space="copy")
    >>> summary = run_sweep(settings)  # doctest: +SKIP

`--trials N` is the study's target of finished (complete or pruned) trials, counted across every
invocation and worker, so rerunning a command resumes it and raising N adds trials. Each worker is
a process running `study.optimize` against the shared storage; on one machine `--jobs N` starts N
of them with the CPU threads split between them, and `--gpus` gives each its own GPU. Workers talk
to the storage and the tracking store directly; both were initialised here first, so they never
race to create tables.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sweeps.objective import (
    INTERRUPTED,
    Objective,
    SweepSettings,
    install_interrupt_handler,
    restore_interrupt_handler,
)
from sweeps.storage import DEFAULT_STORAGE, open_storage, redact  # noqa: F401  (DEFAULT_STORAGE: doc)
from sweeps.tracking import Tracker

FINISHED = ("COMPLETE", "PRUNED")


class SweepError(ValueError):
    """A sweep that cannot start (an existing study of another task or objective, say)."""


@dataclass
class Outcome:
    status: str  # "finished", "already finished", "interrupted", "stopped"
    summary: dict


def make_sampler(name: str, seed: int):
    import optuna  # noqa: PLC0415

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise SweepError(f"unknown sampler {name!r}")


def make_pruner(name: str, eval_every: int, max_samples: int):
    import optuna  # noqa: PLC0415

    if name == "hyperband":  # resource = samples seen; rungs on the evaluation grid
        return optuna.pruners.HyperbandPruner(min_resource=eval_every, max_resource=max_samples,
                                              reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2 * eval_every)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise SweepError(f"unknown pruner {name!r}")


def trial_budget(settings: SweepSettings) -> tuple[int, int]:
    """(eval_every, max_samples) of the sweep's trials, for the pruner's rungs."""
    from sweeps.space import load_space  # noqa: PLC0415
    from thinker.train import TrainConfig  # noqa: PLC0415

    space = load_space(settings.space)
    defaults = TrainConfig()
    eval_every = space.budget.get("eval_every", space.fixed.get("eval_every", defaults.eval_every))
    max_samples = settings.max_samples or space.budget.get("max_samples", defaults.max_samples)
    return eval_every, max_samples


def load_study(settings: SweepSettings, storage, worker: int = 0):
    import optuna  # noqa: PLC0415

    eval_every, max_samples = trial_budget(settings)
    pruner = make_pruner(settings.pruner if len(settings.directions) == 1 else "none", eval_every, max_samples)
    return optuna.load_study(study_name=settings.study, storage=storage,
                             sampler=make_sampler(settings.sampler, settings.seed + worker), pruner=pruner)


def create_study(settings: SweepSettings, storage):
    """Create the study, or check that the existing one is the same sweep."""
    import optuna  # noqa: PLC0415

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
        sampler=make_sampler(settings.sampler, settings.seed),
        pruner=make_pruner(settings.pruner, eval_every, max_samples), load_if_exists=True)
    for key in ("task", "objective", "sampler", "pruner", "space"):
        study.set_user_attr(key, getattr(settings, key))
    return study


def count(study, states=FINISHED) -> int:
    return sum(t.state.name in states for t in study.get_trials(deepcopy=False))


def _quiet_optuna() -> None:
    import optuna  # noqa: PLC0415

    # Optuna logs every failed trial with its traceback; we record the reason in one line instead.
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def run_worker(settings: SweepSettings, parent_run_id: str, worker: int = 0) -> None:
    """Run trials until the study has `settings.trials` finished ones (or the timeout)."""
    import optuna  # noqa: PLC0415
    import torch  # noqa: PLC0415

    _quiet_optuna()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    storage = open_storage(settings.storage)
    study = load_study(settings, storage, worker)
    guard = FailureGuard(limit=max(5, settings.trials))
    previous = install_interrupt_handler()
    try:
        study.optimize(
            Objective(settings, parent_run_id, worker), n_trials=None, timeout=settings.timeout,
            catch=(Exception,), gc_after_trial=True,
            callbacks=[optuna.study.MaxTrialsCallback(settings.trials, states=_states(FINISHED)), guard])
        if INTERRUPTED.is_set():  # a Ctrl-C that came between trials, where nothing raised it
            raise KeyboardInterrupt
    finally:
        restore_interrupt_handler(previous)


def _states(names):
    from optuna.trial import TrialState  # noqa: PLC0415

    return tuple(TrialState[name] for name in names)


class FailureGuard:
    """Stop a worker whose trials keep failing (a broken space, a device that is gone)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.failures = limit, 0

    def __call__(self, study, trial) -> None:
        if INTERRUPTED.is_set():
            study.stop()
        if trial.state.name == "FAIL":
            self.failures += 1
            if self.failures >= self.limit:
                study.stop()


def _worker_process(settings_dict: dict, parent_run_id: str, worker: int) -> None:
    try:
        run_worker(SweepSettings(**settings_dict), parent_run_id, worker)
    except KeyboardInterrupt:
        pass  # the trial was recorded as failed and its run as KILLED; the coordinator reports


def run_sweep(settings: SweepSettings, console: Console | None = None) -> Outcome:
    import optuna  # noqa: PLC0415

    console = console or Console(stderr=True)
    _quiet_optuna()
    storage = open_storage(settings.storage)
    study = create_study(settings, storage)
    done = count(study)
    if done >= settings.trials:
        return Outcome("already finished", summarize(study, settings, None, 0.0))
    tracker = Tracker(settings.tracking_uri, settings.experiment)
    close_dead_trial_runs(study, tracker)
    tags = {"optuna.study": settings.study, "sampler": settings.sampler, "pruner": settings.pruner,
            "objective": settings.objective, "storage": redact(settings.storage), "task": settings.task,
            "trials_target": str(settings.trials), "jobs": str(settings.jobs), "space": settings.space}
    parent_id = tracker.start_parent(f"sweep-{settings.study}-{time.strftime('%Y%m%d-%H%M%S')}", tags)
    parents = study.user_attrs.get("mlflow_parent_runs", [])
    study.set_user_attr("mlflow_parent_runs", [*parents, parent_id])
    console.print(f"sweep {settings.study!r}: {done}/{settings.trials} trials finished; storage "
                  f"{redact(settings.storage)}; tracking {redact(settings.tracking_uri)} (parent run {parent_id})")
    started = time.perf_counter()
    status = "finished"
    try:
        with _TrialProgress(settings, console, done):
            if settings.jobs == 1:
                run_worker(settings, parent_id, 0)
            else:
                _run_processes(settings, parent_id)
    except KeyboardInterrupt:
        status = "interrupted"
    elapsed = time.perf_counter() - started
    study = optuna.load_study(study_name=settings.study, storage=storage)
    if status == "finished" and count(study) < settings.trials:
        status = "stopped"  # the timeout, or too many failures
    close_dead_trial_runs(study, tracker)
    close_abandoned_parents(study, settings, tracker, parent_id)
    summary = summarize(study, settings, parent_id, elapsed)
    finish_parent(tracker, study, settings, parent_id, summary, "KILLED" if status == "interrupted" else "FINISHED")
    return Outcome(status, summary)


def _run_processes(settings: SweepSettings, parent_id: str) -> None:
    ctx = multiprocessing.get_context("spawn")  # no forked torch/sqlite state
    workers = [ctx.Process(target=_worker_process, args=(settings.to_dict(), parent_id, i), name=f"worker-{i}")
               for i in range(settings.jobs)]
    for p in workers:
        p.start()
    try:
        for p in workers:
            p.join()
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches the workers too; a signal to this process alone does not.
        time.sleep(1.0)
        for p in workers:
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)
        for p in workers:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
        raise


def close_dead_trial_runs(study, tracker: Tracker) -> int:
    """Runs still RUNNING whose trial has failed (a worker that died) are ended as KILLED."""
    closed = 0
    for trial in study.get_trials(deepcopy=False, states=_states(("FAIL",))):
        run_id = trial.user_attrs.get("mlflow_run_id")
        if not run_id:
            continue
        try:
            run = tracker.client.get_run(run_id)
        except Exception:
            continue
        if run.info.status == "RUNNING":
            tracker.client.set_tag(run_id, "state", "FAIL")
            tracker.client.set_tag(run_id, "fail_reason", trial.user_attrs.get("fail_reason", "worker died"))
            tracker.client.set_terminated(run_id, "KILLED")
            closed += 1
    return closed


def close_abandoned_parents(study, settings: SweepSettings, tracker: Tracker, own: str) -> int:
    """Once the study is done and nothing runs, parent runs still RUNNING belong to dead invocations."""
    if count(study) < settings.trials or count(study, ("RUNNING", "WAITING")):
        return 0  # other workers may still be at it
    closed = 0
    for run_id in study.user_attrs.get("mlflow_parent_runs", []):
        if run_id == own:
            continue
        try:
            if tracker.client.get_run(run_id).info.status != "RUNNING":
                continue
        except Exception:
            continue
        tracker.client.set_tag(run_id, "status", "abandoned: its process died")
        tracker.client.set_terminated(run_id, "KILLED")
        closed += 1
    return closed


def summarize(study, settings: SweepSettings, parent_id: str | None, seconds: float) -> dict:
    trials = study.get_trials(deepcopy=False)
    states = [t.state.name for t in trials]
    summary = {
        "study": settings.study, "task": settings.task, "objective": settings.objective,
        "trials_target": settings.trials, "finished": sum(s in FINISHED for s in states),
        "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"), "failed": states.count("FAIL"),
        "samples_total": sum(int(t.user_attrs.get("samples", 0)) for t in trials),
        "sweep_seconds": round(seconds, 2), "storage": redact(settings.storage),
        "tracking_uri": redact(settings.tracking_uri), "parent_run_id": parent_id,
    }
    if len(settings.directions) == 1:
        try:
            best = study.best_trial
            summary.update(best_value=best.value, best_trial=best.number, best_params=best.params,
                           best_exact_match=best.user_attrs.get("exact_match"),
                           best_run_id=best.user_attrs.get("mlflow_run_id"))
        except ValueError:  # no complete trial yet
            summary.update(best_value=None, best_trial=None)
    else:
        summary["pareto_front"] = [{"trial": t.number, "values": t.values, "params": t.params}
                                   for t in study.best_trials]
    return summary


def finish_parent(tracker: Tracker, study, settings: SweepSettings, parent_id: str, summary: dict,
                  status: str) -> None:
    """Summary metrics, Optuna's plots and the best trial's checkpoint on the parent run."""
    metrics = {k: summary[k] for k in ("finished", "complete", "pruned", "failed", "samples_total",
                                       "sweep_seconds") if k in summary}
    if summary.get("best_value") is not None:
        metrics["best_value"] = summary["best_value"]
    tags = {"status": status.lower()}
    if summary.get("best_trial") is not None:
        tags["best_trial"] = str(summary["best_trial"])
    try:
        _log_plots(tracker, study, settings, parent_id)
        _copy_best_checkpoint(tracker, summary.get("best_run_id"), parent_id)
    except Exception as e:  # plots and copies are extras; the sweep's results are already stored
        tags["artifact_error"] = str(e).splitlines()[0][:500]
    tracker.finish_parent(parent_id, status, metrics, tags)


def _log_plots(tracker: Tracker, study, settings: SweepSettings, parent_id: str) -> None:
    from optuna import visualization as vis  # noqa: PLC0415

    plots = {"history": vis.plot_optimization_history, "importances": vis.plot_param_importances,
             "parallel_coordinate": vis.plot_parallel_coordinate}
    multi = len(settings.directions) > 1
    if multi:
        plots = {"pareto_front": vis.plot_pareto_front, "parallel_coordinate": vis.plot_parallel_coordinate}
    files = {}
    for name, plot in plots.items():
        try:
            kwargs = {}
            if multi and name != "pareto_front":  # these plots show one objective: exact match
                kwargs = {"target": lambda t: t.values[0], "target_name": "exact match"}
            figure = plot(study, **kwargs)
        except (ValueError, RuntimeError, ZeroDivisionError):  # too few trials for this plot
            continue
        files[f"{name}.html"] = figure.to_html(include_plotlyjs="cdn")
    if files:
        tracker.log_artifacts(parent_id, files, "plots")


def _copy_best_checkpoint(tracker: Tracker, run_id: str | None, parent_id: str) -> None:
    if not run_id:
        return
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        local = tracker.client.download_artifacts(run_id, "checkpoint", tmp)
        tracker.client.log_artifacts(parent_id, local, "best_trial")


class _TrialProgress:
    """A progress bar over finished trials with the best value so far, fed by polling the storage."""

    def __init__(self, settings: SweepSettings, console: Console, done: int) -> None:
        self.settings, self.done = settings, done
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("trials  best {task.fields[best]}  {task.fields[last]}"),
                                 TimeElapsedColumn(), console=console)
        self.stop = threading.Event()

    def __enter__(self):
        self.progress.start()
        self.task_id = self.progress.add_task(self.settings.study, total=self.settings.trials,
                                              completed=self.done, best="-", last="")
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self) -> None:
        import optuna  # noqa: PLC0415

        storage = open_storage(self.settings.storage, heartbeat=False)
        while True:
            try:
                self._update(optuna.load_study(study_name=self.settings.study, storage=storage))
            except Exception:
                pass  # a busy database: try again next tick
            if self.stop.is_set():
                return
            self.stop.wait(1.0)

    def _update(self, study) -> None:
        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state.name in FINISHED]
        best = "-"
        if len(self.settings.directions) == 1 and any(t.state.name == "COMPLETE" for t in trials):
            best = f"{study.best_value:.4g} (#{study.best_trial.number})"
        ended = [t for t in trials if t.state.name in (*FINISHED, "FAIL")]
        last = ""
        if ended:
            t = max(ended, key=lambda t: t.datetime_complete or t.datetime_start)
            last = f"last #{t.number} {t.state.name.lower()}"
            if t.state.name == "FAIL":
                last += f": {t.user_attrs.get('fail_reason', '?')[:60]}"
        self.progress.update(self.task_id, completed=len(finished), best=best, last=last)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.progress.stop()
