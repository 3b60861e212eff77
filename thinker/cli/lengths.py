"""`thinker eval SOURCE --length L1,L2 --steps K1,K2,auto`: exact match over problem length x thinking steps.

    thinker eval runs/addition-20261129-101500 --length 3,6,12 --steps 2,4,8,auto --plot lengths.png

Scoring is `thinker.lengths.length_grid` (each cell `thinker.exam.score_length`); this file prints the
table (lengths down, step counts across), draws it with --plot and prints a JSON last line.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from thinker.cli.options import UsageError
from thinker.cli.progress import progress_bar
from thinker.cli.source import open_source
from thinker.device import configure_torch
from thinker.lengths import draw_length_grid, length_grid
from thinker.machine import describe, label, usable_cpus
from thinker.outputs import check_writable_file, ready_to_write
from thinker.parsing import int_list

DEFAULT_SIZE = 2048  # problems per length and step count


def parse_steps(text: str | None, auto: bool = False) -> list[int | str | None]:
    """`"1,2,4"` -> [1, 2, 4]; None -> [None] (the model's own); with `auto`, "auto" may be one of them
    (steps in proportion to the problem's length: with --length only)."""
    if not text:
        return [None]
    parts = text.split(",")
    if auto and "auto" in (p.strip() for p in parts):
        rest = ",".join(p for p in parts if p.strip() != "auto")
        numbers = int_list(rest, "--steps", minimum=1, example="2,4,auto") if rest else []
        return [*numbers, "auto"]
    if "auto" in text and not auto:
        raise UsageError("--steps auto needs --length: the step count follows the problems' length")
    return int_list(text, "--steps", minimum=1)


def length_command(source: str, length: str | None, steps: str | None, sample: int | None, plot: Path | None,
                   device: str, storage: str | None, tracking_uri: str | None, csv_path: Path | None,
                   mlflow: bool) -> None:
    if length is None:
        raise UsageError("--plot draws the --length table: give --length too")
    if csv_path is not None or mlflow:
        raise UsageError("--length writes its table and JSON line only: leave out --csv and --mlflow")
    lengths = int_list(length, "--length", minimum=1, example="3,6,12")
    step_list = parse_steps(steps, auto=True)
    if plot is not None:
        check_writable_file(plot, "--plot")
    configure_torch()
    found = open_source(source, device, storage, tracking_uri)
    model, task = found.checkpoint.model, found.checkpoint.task
    for n in lengths:  # a length the task cannot make, or the model has no positions for: before any work
        length_grid(model, task, [n], [1], size=1)
    workers = min(usable_cpus(), 8) if model.memory.device.type == "cpu" else 1
    with progress_bar("cells") as progress:
        bar = progress.add_task(f"{task.name} lengths x steps", total=len(lengths) * len(step_list), extra="")
        rows = length_grid(model, task, lengths, step_list, size=sample or DEFAULT_SIZE, workers=workers,
                           on_cell=lambda _: progress.advance(bar))
    trained = (task.train_length, model.cfg.steps)
    title = (f"{task.name} · {found.label}: exact match by length (trained {trained[0]}) and thinking steps "
             f"(trained {trained[1]}), {rows[0]['problems']:,} problems a cell")
    console = Console()
    console.print(title, style="bold", markup=False)
    console.print(grid_table(rows, trained))
    if plot is not None:
        draw_length_grid(ready_to_write(plot), rows, title, trained)
        console.print(f"wrote {plot}")
    print(json.dumps({"source": source, "task": task.name, "trained_length": trained[0], "trained_steps": trained[1],
                      "machine": label(describe(model.memory.device)), "workers": workers, "grid": rows}))


def grid_table(rows: list[dict], trained: tuple[int, int]) -> Table:
    """Lengths down, step counts across; "auto" cells name the step count they ran."""
    columns = list(dict.fromkeys(str(r["asked"] or trained[1]) for r in rows))
    table = Table("length", *(f"{c} steps" + (" (trained)" if c == str(trained[1]) else "") for c in columns),
                  box=None)
    for n in dict.fromkeys(r["length"] for r in rows):
        cells = {str(r["asked"] or trained[1]): r for r in rows if r["length"] == n}
        table.add_row(f"{n}{' (trained)' if n == trained[0] else ''}",
                      *(f"{cells[c]['exact_match']:.2%}" + (f" ({cells[c]['steps']})" if c == "auto" else "")
                        for c in columns))
    return table
