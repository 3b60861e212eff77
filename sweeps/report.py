"""What a study found: best trials, parameter importances, and a CSV for pandas users.

    >>> rows = best_trials(study, top=10)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings

import optuna
import pandas as pd

from thinker.errors import ThinkerError
from thinker.sweeps.storage import open_storage


class ReportError(ThinkerError):
    """No such study, or nothing to report."""


def open_study(name: str, storage_url: str):
    """Load an existing study without creating anything (no new SQLite file, no new study)."""
    storage = open_storage(storage_url, heartbeat=False, must_exist=True)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if name not in names:
        known = f"; studies there: {', '.join(names)}" if names else "; it holds no studies"
        raise ReportError(f"no study {name!r} in {storage_url}{known}")
    return optuna.load_study(study_name=name, storage=storage)


def trial_rows(study) -> pd.DataFrame:
    """One row per trial: number, state, value(s), samples, seconds, exact match, reason, params."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"trial": t.number, "state": t.state.name}
        if t.values is not None:
            for i, value in enumerate(t.values):
                row["value" if len(t.values) == 1 else f"value_{i}"] = value
        row["exact_match"] = t.user_attrs.get("exact_match")
        row["samples"] = t.user_attrs.get("samples")
        row["train_seconds"] = t.user_attrs.get("train_seconds")
        row["restarts"] = t.user_attrs.get("restarts")
        row["reason"] = t.user_attrs.get("fail_reason") or t.user_attrs.get("prune_reason")
        row["mlflow_run_id"] = t.user_attrs.get("mlflow_run_id")
        row.update({f"param.{k}": v for k, v in t.params.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def best_trials(study, top: int = 10) -> pd.DataFrame:
    """Complete trials, best first (by the study's direction), then the rest by trial number."""
    frame = trial_rows(study)
    if frame.empty:
        return frame
    complete = frame[frame.state == "COMPLETE"]
    if len(study.directions) == 1 and "value" in complete:
        ascending = study.direction.name == "MINIMIZE"
        complete = complete.sort_values(["value", "samples"], ascending=[ascending, True])
    rest = frame[frame.state != "COMPLETE"].sort_values("trial")
    return pd.concat([complete, rest]).head(top)


def importances(study) -> dict[str, float]:
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

