"""What a sweep found, as a dict for the JSON line and as metrics, plots and a checkpoint on the parent run.

    summary = summarize(study, settings, parent_id, seconds)
    finish_parent(tracker, study, settings, parent_id, summary, "FINISHED")
"""

from __future__ import annotations

import optuna
from optuna import visualization

from thinker.errors import one_line
from thinker.sweeps.plots import render as study_png
from thinker.sweeps.report import importances
from thinker.sweeps.settings import FINISHED, SweepSettings
from thinker.sweeps.storage import redact
from thinker.sweeps.tracking import Tracker


def summarize(study: optuna.Study, settings: SweepSettings, parent_id: str | None, seconds: float) -> dict:
    trials = study.get_trials(deepcopy=False)
    names = [t.state.name for t in trials]
    summary = {
        "study": settings.study, "task": settings.task, "objective": settings.objective,
        "trials_target": settings.trials, "finished": sum(s in FINISHED for s in names),
        "complete": names.count("COMPLETE"), "pruned": names.count("PRUNED"), "failed": names.count("FAIL"),
        "interrupted": sum(t.state.name == "FAIL" and t.user_attrs.get("fail_reason") == "interrupted" for t in trials),
        "samples_total": sum(int(t.user_attrs.get("samples", 0)) for t in trials),
        "sweep_seconds": round(seconds, 2), "storage": redact(settings.storage),
        "tracking_uri": redact(settings.tracking_uri), "parent_run_id": parent_id,
        "last_failure": next((t.user_attrs.get("fail_reason") for t in reversed(trials)
                              if t.state.name == "FAIL" and t.user_attrs.get("fail_reason") != "interrupted"), None),
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


def finish_parent(tracker: Tracker, study: optuna.Study, settings: SweepSettings, parent_id: str, summary: dict,
                  status: str) -> None:
    """Summary metrics, Optuna's plots and the best trial's checkpoint on the parent run, then end it."""
    metrics = {k: summary[k] for k in ("finished", "complete", "pruned", "failed", "interrupted", "samples_total",
                                       "sweep_seconds") if k in summary}
    if summary.get("best_value") is not None:
        metrics["best_value"] = summary["best_value"]
    tags = {"status": status.lower()}
    if summary.get("best_trial") is not None:
        tags["best_trial"] = str(summary["best_trial"])
    if summary.get("stop_reason"):
        tags["stop_reason"] = summary["stop_reason"]
    try:
        plots = render_plots(study, settings)
        if plots:
            tracker.log_files(parent_id, plots, "plots")
        if summary.get("best_run_id"):
            tracker.copy_artifacts(summary["best_run_id"], "checkpoint", parent_id, "best_trial")
    except Exception as e:  # plots and copies are extras; the sweep's results are already stored
        tags["artifact_error"] = one_line(e, 500)
    tracker.finish_parent(parent_id, status, metrics, tags)


def render_plots(study: optuna.Study, settings: SweepSettings) -> dict[str, str | bytes]:
    """Optuna's plots as standalone HTML files, by file name, the ones with too few trials left out; and
    the study at a glance as `study.png` (`plots.py`), which needs no script from the web to show."""
    plots = {"history": visualization.plot_optimization_history,
             "importances": visualization.plot_param_importances,
             "parallel_coordinate": visualization.plot_parallel_coordinate}
    multi = len(settings.directions) > 1
    if multi:
        plots = {"pareto_front": visualization.plot_pareto_front,
                 "parallel_coordinate": visualization.plot_parallel_coordinate}
    files, ranked = {}, importances(study)
    for name, plot in plots.items():
        if name == "importances" and not ranked:
            continue  # too little to tell: Optuna would draw equal bars
        try:
            kwargs = {}
            if multi and name != "pareto_front":  # these plots show one objective: exact match
                kwargs = {"target": lambda t: t.values[0], "target_name": "exact match"}
            figure = plot(study, **kwargs)
        except (ValueError, RuntimeError, ZeroDivisionError):  # too few trials for this plot
            continue
        files[f"{name}.html"] = figure.to_html(include_plotlyjs="cdn")
    if study.trials:
        files["study.png"] = study_png(study, ranked)
    return files
