"""`thinker report [TASK]`: the best trials of a study, parameter importances, and a CSV.

    thinker report addition
    thinker report --study addition --csv trials.csv
    thinker report addition --plot study.png
"""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from thinker.cli.options import PATH, Storage, UsageError
from thinker.outputs import check_apart, check_writable_file, ready_to_write

# short: the parameters need the width
HEADERS = {"exact_match": "exact", "scored_exact_match": "final", "train_seconds": "seconds"}


def report_command(
    task: Annotated[str | None, typer.Argument(help="Task whose study to show (studies are named after tasks).")
                    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name [default: the task].")] = None,
    storage: Storage = None,
    top: Annotated[int, typer.Option(min=1, help="How many trials to show.")] = 10,
    csv: Annotated[Path | None, typer.Option(help="Also write every trial to this CSV file.", **PATH)] = None,
    plot: Annotated[Path | None, typer.Option(**PATH,
        help="Also draw the study to this PNG: learning curves, value by trial, importances.")] = None,
) -> None:
    """Show the best trials of a sweep (value, params, samples, seconds, state) and what mattered."""
    from thinker.sweeps.report import best_figures, best_trials, importances, open_study, trial_rows  # noqa: PLC0415
    from thinker.sweeps.stores import DEFAULT_STORAGE, check_url, journal_path, sqlite_path  # noqa: PLC0415
    from thinker.sweeps.trial import TrialRecord  # noqa: PLC0415

    name = study or task
    if not name:
        raise UsageError("name a task or pass --study NAME")
    url = storage or DEFAULT_STORAGE
    for path, option in ((csv, "--csv"), (plot, "--plot")):
        if path is not None:
            check_writable_file(path, option)
    check_url(url)
    check_apart({"--csv": csv, "--plot": plot}, {"the study's storage": sqlite_path(url) or journal_path(url)})
    found = open_study(name, url)
    console = Console()
    rows = best_trials(found, top)
    if rows.empty:
        console.print(f"study {name!r} has no trials yet{'; no plot written' if plot else ''}")
        return
    param_columns = [c for c in rows.columns if c.startswith("param.")]
    value_columns = [c for c in rows.columns if c.startswith("value")]
    shown = ("trial", "state", *value_columns, "exact_match", "scored_exact_match", "samples", "train_seconds")
    # narrow headers and no edge padding leave room for the parameters on an 80-column terminal
    table = Table(title=f"study {name!r}: best trials", box=None, pad_edge=False)
    for column in shown:
        table.add_column(HEADERS.get(column, column.replace("_", " ")), justify="right", no_wrap=True)
    table.add_column("params / reason", overflow="fold")
    for _, row in rows.iterrows():
        params = " ".join(f"{c.removeprefix('param.')}={_fmt(row.get(c))}" for c in param_columns)
        reason = row.get("reason")
        detail = params if not isinstance(reason, str) else f"{params}  [{reason}]"
        table.add_row(*(_cell(row, c) for c in shown), detail)
    console.print(table)
    console.print("exact: held-out exact match during training (of N problems); final: the score at the target "
                  "(of N problems), which ranks trials that reach it")
    ranked = importances(found)
    if ranked:
        imp = Table("parameter", "importance", title="parameter importances", box=None)
        for param, value in ranked.items():
            imp.add_row(param, f"{value:.3f}  {'█' * round(value * 30)}")
        console.print(imp)
    if csv is not None:
        every = trial_rows(found)
        every.to_csv(ready_to_write(csv), index=False)
        console.print(f"wrote {len(every)} trials to {csv}")
    if plot is not None:
        from thinker.sweeps.plots import save  # noqa: PLC0415 - matplotlib

        save(found, ready_to_write(plot))
        console.print(f"wrote the study's plot to {plot}")
    summary = {"study": name, "trials": len(found.trials), "importances": ranked}
    if any(t.state.name == "COMPLETE" for t in found.trials) and len(found.directions) == 1:
        best = found.best_trial
        figures = best_figures(found, best.number, TrialRecord.from_trial(best))
        summary.update(best_value=found.best_value, best_trial=best.number, best_params=best.params, **figures)
        console.print(f"best trial {best.number}: exact match {figures['best_scored']}")
        checked = figures.get("best_verdict") or "not checked (a sweep checks its best trial at its end)"
        console.print(f"  on every problem: {checked}")
    print(json.dumps(summary))


def _cell(row, column: str) -> str:
    """A table cell; an exact match with the problems behind it ("0.99952/100481")."""
    value = row.get(column)
    counted = {"exact_match": "eval_problems", "scored_exact_match": "scored_problems"}
    if column in counted and _fmt(value) != "-":
        return f"{value:.5f}/{_fmt(row.get(counted[column]))}"
    if column.startswith("value") and isinstance(value, float) and value == value:
        return f"{value:.7g}"
    return _fmt(value)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
