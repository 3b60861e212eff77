"""What a study found: its trials as a table, the best ones, parameter importances, and a sweep's summary.

    >>> rows = best_trials(study, top=10)  # doctest: +SKIP
    >>> summary = summarize(study, settings, parent_run_id, seconds=812.5)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings

import optuna
import pandas as pd

from thinker.errors import ThinkerError
from thinker.sweeps.final import Score
from thinker.sweeps.settings import SweepSettings
from thinker.sweeps.stores import redact
from thinker.sweeps.study import open_storage
from thinker.sweeps.trial import FINISHED, TrialRecord, verified

RECORD_COLUMNS = ("exact_match", "eval_problems", "samples", "train_seconds", "restarts", "reason", "mlflow_run_id")
SCORE_COLUMNS = ("scored_exact_match", "scored_problems", "scored_wrong")  # the final score, at the target


class ReportError(ThinkerError):
    """No such study, or nothing to report."""


def open_study(name: str, storage_url: str) -> optuna.Study:
    """Load an existing study without creating anything (no new SQLite file, no new study)."""
    storage = open_storage(storage_url, heartbeat=False, must_exist=True)
    names = optuna.get_all_study_names(storage)
    if name not in names:
        known = f"; studies there: {', '.join(names)}" if names else "; it holds no studies"
        raise ReportError(f"no study {name!r} in {storage_url}{known}")
    return optuna.load_study(study_name=name, storage=storage)


def trial_rows(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: trial, state, value(s), exact match, samples, seconds, restarts, reason, run, params."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params"))
    if frame.empty:
        return frame
    frame = frame.rename(columns=lambda c: "trial" if c == "number" else "param." + c.removeprefix("params_")
                         if c.startswith("params_") else c.replace("values_", "value_"))
    records = [TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False)]
    params = [c for c in frame.columns if c.startswith("param.")]
    for column in RECORD_COLUMNS:
        frame[column] = [getattr(r, column) for r in records]
    for column in SCORE_COLUMNS:
        frame[column] = [(r.final or {}).get(column.removeprefix("scored_")) for r in records]
    return frame[[c for c in frame.columns if c not in params] + params]


def best_trials(study: optuna.Study, top: int = 10) -> pd.DataFrame:
    """Complete trials, best first (by the study's direction), then the rest by trial number."""
    frame = trial_rows(study)
    if frame.empty:
        return frame
    complete = frame[frame.state == "COMPLETE"]
    if len(study.directions) == 1 and "value" in complete:
        ascending = study.direction.name == "MINIMIZE"
        complete = complete.sort_values(["value", "samples", "trial"], ascending=[ascending, True, True])
    rest = frame[frame.state != "COMPLETE"].sort_values("trial")
    return pd.concat([complete, rest]).head(top)


def importances(study: optuna.Study) -> dict[str, float]:
    """Parameter importances over complete trials (empty when there are too few to tell)."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        return {}
    try:
        # Two objectives: rank by exact match. Optuna's default evaluator (PED-ANOVA since Optuna 5) takes
        # a custom target as one to minimise, hence the minus (its warnings are read, not shown); a single
        # objective goes by its direction.
        target = (lambda t: -t.values[0]) if len(study.directions) > 1 else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values = optuna.importance.get_param_importances(study, target=target)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}
    if any("importances will be equal" in str(w.message) for w in caught):
        return {}  # PED-ANOVA's way of saying there is too little to tell (too few trials, all alike)
    return {k: v for k, v in values.items() if not math.isnan(v)}


def summarize(study: optuna.Study, settings: SweepSettings, parent_id: str | None, seconds: float) -> dict:
    """A sweep's outcome: what the JSON line says and the parent run records."""
    trials = study.get_trials(deepcopy=False)
    records = [TrialRecord.from_trial(t) for t in trials]
    names = [t.state.name for t in trials]
    failures = [r.fail_reason for t, r in zip(trials, records) if t.state.name == "FAIL" and not r.interrupted]
    summary = {
        "study": settings.study, "task": settings.task, "objective": settings.objective,
        "trials_target": settings.trials, "finished": sum(s in FINISHED for s in names),
        "complete": names.count("COMPLETE"), "pruned": names.count("PRUNED"), "failed": names.count("FAIL"),
        "interrupted": sum(s == "FAIL" and r.interrupted for s, r in zip(names, records)),
        "samples_total": sum(int(r.samples or 0) for r in records),
        "unsent_points": sum(int(r.unsent_points or 0) for r in records),  # metric points MLflow never got
        "sweep_seconds": round(seconds, 2), "storage": redact(settings.storage),
        "tracking_uri": redact(settings.tracking_uri), "parent_run_id": parent_id,
        "last_failure": failures[-1] if failures else None,
    }
    if not settings.single_objective:
        summary["pareto_front"] = [{"trial": t.number, "values": t.values, "params": t.params}
                                   for t in study.best_trials]
    elif "COMPLETE" in names:
        best = study.best_trial
        record = TrialRecord.from_trial(best)
        summary.update(best_value=best.value, best_trial=best.number, best_params=best.params,
                       best_run_id=record.mlflow_run_id, **best_figures(study, best.number, record))
    else:
        summary.update(best_value=None, best_trial=None)
    return summary


def best_figures(study: optuna.Study, number: int, record: TrialRecord) -> dict:
    """The best trial's exact match with the problems behind it (its final score at the target, else its
    held-out evaluation), the 95% Wilson interval of a sample, and what scoring it on every problem found."""
    if record.final:
        final = Score(**record.final)
    else:
        problems = record.eval_problems or 0
        right = round((record.exact_match or 0.0) * problems)
        final = Score(record.exact_match or 0.0, problems, problems - right, False)
    low, high = final.interval() or (None, None)
    out = {"best_exact_match": final.exact_match, "best_problems": final.problems, "best_wrong": final.wrong,
           "best_low": low, "best_high": high,
           "best_scored": final.describe()}
    check = verified(study, number)
    if check:
        out.update(best_verified_problems=check["problems"], best_verified_wrong=check["wrong"],
                   best_verdict=check["verdict"])
    return out
