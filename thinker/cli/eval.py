"""`thinker eval SOURCE`: score a trained model on every problem (or a large sample) and show where it fails.

    thinker eval runs/addition-20261129-101500 --exhaustive
    thinker eval addition:17 --exhaustive --csv wrong.csv --mlflow
    thinker eval runs/addition-20261129-101500 --steps 1,2,3,4,6,8
    thinker eval runs/addition-20261129-101500 --length 3,6,12 --steps 2,4,auto --plot lengths.png

Scoring is `thinker.exam`; this file turns its results into tables, a CSV of the wrong problems, MLflow
metrics and a JSON last line on stdout.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from thinker.cli.lengths import length_command, parse_steps
from thinker.cli.options import PATH, Device, Storage, TrackingUri
from thinker.cli.progress import progress_bar
from thinker.cli.source import Source, open_source
from thinker.device import configure_torch
from thinker.exam import EXHAUSTIVE_LIMIT, Exam, breakdowns, exam_size, examine
from thinker.machine import describe, label, usable_cpus
from thinker.outputs import check_apart, check_writable_file, ready_to_write
from thinker.training.checkpoint import checkpoint_path

SPLITS = {"all": "all", "held_out": "held-out", "train": "train", "long": "longer than training"}


def eval_command(
    source: Annotated[str, typer.Argument(help="Run directory, model.pt, STUDY:TRIAL or an MLflow run id.")],
    exhaustive: Annotated[bool, typer.Option(
        help=f"Score every problem (when the task has at most {EXHAUSTIVE_LIMIT:,}; else a sample).")] = False,
    sample: Annotated[int | None, typer.Option(
        min=1, help="Held-out and training problems each, when sampling; with --length, problems per length "
                    "[default: 100,000; with --length 2,048].")] = None,
    long: Annotated[int, typer.Option(min=0, help="Longer-than-training problems (a sample; 0 skips).")] = 10_000,
    steps: Annotated[str | None, typer.Option(
        help="Thinking steps to evaluate with (test-time thinking), or a list: 1,2,4,8; with --length also auto "
             "(the trained steps times length / training length) [default: as trained].")] = None,
    length: Annotated[str | None, typer.Option(
        help="Score random problems of this length instead (digits of every operand, symbols of a sequence), "
             "or a list: 3,6,12; a table of exact match over length x steps.")] = None,
    plot: Annotated[Path | None, typer.Option(help="With --length: draw the table as a PNG here.", **PATH)] = None,
    show: Annotated[int, typer.Option(min=0, help="Wrong problems to show, decoded.")] = 10,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write every wrong problem to this CSV file.", **PATH)
                        ] = None,
    mlflow: Annotated[bool, typer.Option(
        "--mlflow", help="Log the figures to MLflow: onto the trial's run, or a new run in experiment 'eval'.")
                      ] = False,
    device: Device = "auto",
    storage: Storage = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Score a trained model: exact match by split, where it goes wrong, the wrong problems themselves."""
    if length is not None or plot is not None:
        length_command(source, length, steps, sample, plot, device, storage, tracking_uri, csv_path, mlflow)
        return
    step_list = parse_steps(steps)
    if csv_path is not None:
        local = checkpoint_path(source) if Path(source).exists() else None
        check_apart({"--csv": csv_path}, {"the checkpoint": local})
        check_writable_file(csv_path, "--csv")
    if mlflow:  # a store that cannot be used is found before the work, not after it
        from thinker.sweeps.tracking import client, resolve_tracking_uri  # noqa: PLC0415 - MLflow

        client(resolve_tracking_uri(tracking_uri))
    sample = sample or 100_000
    configure_torch()
    found = open_source(source, device, storage, tracking_uri)
    ckpt = found.checkpoint
    console = Console()
    workers = min(usable_cpus(), 8) if ckpt.model.memory.device.type == "cpu" else 1
    exams = []
    with progress_bar("problems") as progress:
        for k in step_list:
            total = exam_size(ckpt.task, exhaustive, sample, long)
            bar = progress.add_task(f"{ckpt.task.name} steps={k or ckpt.model.cfg.steps}", total=total, extra="")
            exams.append(examine(ckpt.model, ckpt.task, exhaustive=exhaustive, sample_size=sample, long_size=long,
                                 steps=k, workers=workers, on_chunk=lambda n, bar=bar: progress.advance(bar, n)))
    trained = ckpt.model.cfg.steps
    if exhaustive and exams[0].mode != "exhaustive":
        console.print(f"{ckpt.task.name}: {ckpt.task.space_size():,} problems are too many to score one by one "
                      f"(limit {EXHAUSTIVE_LIMIT:,}); scored a sample of {2 * sample:,} instead")
    if len(exams) == 1:
        _show_one(console, found, exams[0], show)
    else:
        _show_steps(console, found, exams)
    if csv_path is not None:
        count = write_wrong_csv(ready_to_write(csv_path), exams[-1])
        console.print(f"wrote {count:,} wrong problems to {csv_path}")
    summary = {"source": source, "checkpoint": str(ckpt.path) if found.run_id is None else None,
               "run_id": found.run_id, "task": ckpt.task.name, "mode": exams[0].mode, "trained_steps": trained,
               "machine": label(describe(ckpt.model.memory.device)), "workers": workers,
               "by_steps": [_figures(e) for e in exams], **_figures(exams[-1])}
    if mlflow:
        summary["mlflow_run_id"] = _log_mlflow(found, exams, tracking_uri)
    print(json.dumps(summary))


def _figures(exam: Exam) -> dict:
    figures = exam.figures()
    return {"steps": exam.steps, "seconds": round(exam.seconds, 2),
            **{f"{split}_{key}": value for split, row in figures.items() for key, value in row.items()}}


def _show_one(console: Console, found: Source, exam: Exam, show: int) -> None:
    task, trained = exam.task, found.checkpoint.model.cfg.steps
    steps_note = f"{exam.steps} thinking steps" + (f" (trained with {trained})" if exam.steps != trained else "")
    title = (f"{task.name} · {found.label} · {exam.mode}: {exam.scores.size:,} problems"
             f"{'' if exam.long is None else f' + {exam.long.size:,} longer'} in {exam.seconds:.1f}s · {steps_note}")
    console.print(title, style="bold", markup=False)  # a line of its own: as a table title it wraps to the table
    table = Table("split", "problems", "wrong", "exact match", "token accuracy", box=None)
    for split, row in exam.figures().items():
        table.add_row(SPLITS[split], f"{row['problems']:,}", f"{row['wrong']:,}", f"{row['exact_match']:.4%}",
                      f"{row['token_accuracy']:.4%}")
    console.print(table)
    if exam.scores.right.all():
        return
    for name, rows in breakdowns(exam).items():
        columns = [c for c in ("problems", "wrong", "exact_match", "share_of_wrong") if c in rows[0]]
        sub = Table(name, *(c.replace("_", " ") for c in columns), title=f"by {name}", box=None)
        for row in rows:
            sub.add_row(row["label"], *(f"{row[c]:.4%}" if isinstance(row[c], float) else f"{row[c]:,}"
                                        for c in columns))
        console.print(sub)
    wrong = exam.wrong()
    if show:
        console.print(f"first {min(show, len(wrong))} of {len(wrong):,} wrong problems:")
        for i in wrong[:show].tolist():
            console.print("  " + describe_wrong(exam, i), markup=False)


def describe_wrong(exam: Exam, i: int) -> str:
    """`1 + f = 10, got 0  (held-out, confidence 0.62)`."""
    task, scores = exam.task, exam.scores
    split = "held-out" if bool(exam.held_out[i]) else "train"
    expected, got = (task.show_answer(t[i].tolist()) for t in (scores.expected, scores.answers))
    return (f"{task.show(scores.problems[i].tolist())} = {expected}, got {got}  "
            f"({split}, confidence {float(scores.confidence[i]):.2f})")


def _show_steps(console: Console, found: Source, exams: list[Exam]) -> None:
    trained = found.checkpoint.model.cfg.steps
    splits = list(exams[0].figures())
    console.print(f"{exams[0].task.name} · {found.label}: thinking steps at test time (trained with {trained})",
                  style="bold", markup=False)
    table = Table("steps", *(f"{SPLITS[s]} exact match" for s in splits), "seconds", box=None)
    for exam in exams:
        figures = exam.figures()
        table.add_row(f"{exam.steps}{' (trained)' if exam.steps == trained else ''}",
                      *(f"{figures[s]['exact_match']:.4%}" for s in splits), f"{exam.seconds:.1f}")
    console.print(table)


def write_wrong_csv(path: Path, exam: Exam) -> int:
    """Every wrong problem (main set, then the longer ones): problem, expected, got, split, position, confidence."""
    task = exam.task
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["problem", "expected", "got", "split", "first_wrong_position", "confidence"])
        count = 0
        for scores, held_out in ((exam.scores, exam.held_out), (exam.long, None)):
            if scores is None:
                continue
            for i in (~scores.right).nonzero().flatten().tolist():
                split = "long" if held_out is None else ("held_out" if bool(held_out[i]) else "train")
                out.writerow([task.show(scores.problems[i].tolist()), task.show_answer(scores.expected[i].tolist()),
                              task.show_answer(scores.answers[i].tolist()), split, int(scores.first_wrong[i]),
                              f"{float(scores.confidence[i]):.4f}"])
                count += 1
    return count


def _log_mlflow(found: Source, exams: list[Exam], tracking_uri: str | None) -> str:
    """Metrics `{mode}_{split}_exact_match` (suffixed `_steps{K}` when K is not the trained count)."""
    from thinker.sweeps.tracking import log_metrics, log_run, resolve_tracking_uri  # noqa: PLC0415 - MLflow

    trained = found.checkpoint.model.cfg.steps
    metrics = {}
    for exam in exams:
        suffix = "" if exam.steps == trained else f"_steps{exam.steps}"
        for split, row in exam.figures().items():
            prefix = "long" if split == "long" else f"{exam.mode}_{split}"
            metrics[f"{prefix}_exact_match{suffix}"] = row["exact_match"]
            metrics[f"{prefix}_token_accuracy{suffix}"] = row["token_accuracy"]
            metrics[f"{prefix}_wrong{suffix}"] = row["wrong"]
    uri = resolve_tracking_uri(tracking_uri)
    if found.run_id is not None:
        log_metrics(uri, found.run_id, metrics)
        return found.run_id
    ckpt = found.checkpoint
    return log_run(uri, "eval", f"{ckpt.task.name}-{Path(found.label).name}", ckpt.config.to_dict(), metrics,
                   {"thinker.checkpoint": str(ckpt.path.resolve())},
                   {"source": found.label, "by_steps": [_figures(e) for e in exams]}, "eval.json")
