"""Which trial at the target is really the best: every one of them scored on every problem, apart from the sweep.

    python -m thinker.bench.best_check DIR [--study addition] [--json out.json]

DIR holds a finished sweep's stores (optuna.db, mlflow.db, as `thinker sweep` leaves them). Every
complete trial whose held-out exact match reached the target is loaded from its MLflow checkpoint and
scored on all of the task's problems with `thinker.exam.examine` (what `thinker eval --exhaustive`
does), not with the sweep's own final scoring; the fewest wrong wins, ties to the fewer samples to the
target. The JSON says whether that is the trial the sweep reported as best.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from thinker.exam import examine
from thinker.machine import usable_cpus
from thinker.sweeps.report import open_study
from thinker.sweeps.tracking import download_checkpoint
from thinker.sweeps.trial import TrialRecord
from thinker.training import load_checkpoint


def check(folder: Path, study_name: str, only: set[int] | None = None) -> dict:
    study = open_study(study_name, f"sqlite:///{folder / 'optuna.db'}")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    rows = []
    for trial in study.get_trials(deepcopy=False):
        record = TrialRecord.from_trial(trial)
        target = (record.config or {}).get("target", 1.0)
        wanted = not only or trial.number in only
        if trial.state.name != "COMPLETE" or (record.exact_match or 0.0) < target or not wanted:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = load_checkpoint(download_checkpoint(uri, record.mlflow_run_id, tmp))
        start = time.perf_counter()
        exam = examine(checkpoint.model, checkpoint.task, exhaustive=True, long_size=0, workers=usable_cpus())
        figures = exam.figures()["all"]
        rows.append({"trial": trial.number, "value": trial.value, "held_out_2048": record.exact_match,
                     "samples_to_target": record.samples_to_target, "problems": figures["problems"],
                     "wrong": figures["wrong"], "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    def rank(r: dict) -> tuple:  # fewest wrong, then fewest samples to the target (none: last)
        return r["wrong"], r["samples_to_target"] if r["samples_to_target"] is not None else math.inf

    best = min(rows, key=rank) if rows else None
    tied = [r["trial"] for r in rows if rank(r) == rank(best)] if rows else []
    reported = study.best_trial.number if rows else None
    return {"study": study_name, "trials_at_target": rows, "exhaustive_best": best and best["trial"],
            "exhaustive_best_tied": tied, "reported_best": reported, "agree": reported in tied,
            "reported_best_wrong": next((r["wrong"] for r in rows if r["trial"] == reported), None)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--study", default="addition")
    parser.add_argument("--json")
    parser.add_argument("--only", help="these trials only (comma-separated numbers)")
    args = parser.parse_args(argv)
    torch.set_num_threads(usable_cpus())
    report = check(args.folder, args.study, {int(n) for n in args.only.split(",")} if args.only else None)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
