"""Does thinking longer solve longer problems? Exact match over problem length x thinking steps, per seed.

    python -m thinker.bench.lengths                      # addition, copy, flip, roll: default and relative; seeds 0-3
    python -m thinker.bench.lengths --tasks addition --variants local --seeds 0 --json out.json  # plot: out.png

For each task and variant, one training per seed (the task's defaults with the variant's settings over
them), then `thinker.lengths.length_grid` on the trained model: `--size` random problems of 1, 2 and 4
times the training length (`Task.train_length`), at 1, the trained, 2x and 4x the trained steps and
"auto" (steps in proportion to length). A cell the model cannot score (no positions for that length, a
length the task cannot make) is kept with its reason. The table goes to stderr, the plot to a PNG, the
last stdout line is one JSON document.
"""

from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from thinker.bench.args import BenchParser, device, positive_int, writable
from thinker.bench.learning import machine_record, parse_seeds, write
from thinker.errors import ConfigError, one_line
from thinker.lengths import length_grid
from thinker.model import Thinker, ThinkerConfig
from thinker.outputs import ready_to_write
from thinker.plotting import pyplot
from thinker.tasks import make_task
from thinker.training import TrainConfig, train

# task -> variant -> the flat TrainConfig values over the task's defaults
LOCAL = {"window": 1, "latent": 0, "position_jitter": True, "max_positions": 16, "steps": 4, "min_steps": 2,
         "deep_supervision": True, "target": 1.01, "exhaustive_check": False, "max_samples": 60_000}
# positions only as differences (no learned position embedding), 8 steps, 150k samples: the best of the
# variants tried (bench/README.md, variant N)
RELATIVE = {**LOCAL, "absolute_positions": False, "steps": 8, "max_samples": 150_000}
# sequence tasks: position tables long enough to score twice the training length (8 symbols: 0..16)
ROOM = {"max_positions": 18}
VARIANTS = {
    "addition": {"default": {}, "local": {**LOCAL, "task_options": {"pad": 6}},
                 "relative": {**RELATIVE, "task_options": {"pad": 6}}},
    **{task: {"default": ROOM, "relative": {**ROOM, "absolute_positions": False}} for task in ("copy", "flip", "roll")},
}
MULTIPLES = (1, 2, 4)  # lengths: these times the training length


def run_one(spec: dict) -> dict:
    """Train one variant on one seed, then score it over length x steps."""
    threads = spec.pop("threads")
    if threads:  # 0: torch's own default
        torch.set_num_threads(threads)
    size = spec.pop("size")
    task_name, variant = spec.pop("task"), spec.pop("variant")
    cfg = TrainConfig.for_task(task_name, **spec)
    start = time.perf_counter()
    result = train(cfg)
    model = Thinker(ThinkerConfig(**result.model_config))
    model.load_state_dict(result.state_dict)
    task = make_task(cfg.task, **cfg.task_options)
    k = cfg.model.steps
    cells = []
    for length in (m * task.train_length for m in MULTIPLES):
        for steps in dict.fromkeys([1, k, 2 * k, 4 * k, "auto"]):
            try:
                cells += length_grid(model.eval(), task, [length], [steps], size=size)
            except ConfigError as e:
                cells.append({"length": length, "asked": steps, "steps": None, "exact_match": None,
                              "error": one_line(e)})
    return {"task": task_name, "variant": variant, "seed": cfg.seed, "config": cfg.to_dict(),
            "train_length": task.train_length, "trained_steps": k, "samples": result.samples,
            "held_out_exact_match": result.exact_match, "train_seconds": round(result.train_seconds, 1),
            "seconds": round(time.perf_counter() - start, 1), "cells": cells}


def summarise(rows: list[dict]) -> list[dict]:
    """Per task, variant, length and asked steps: exact match per seed and its mean."""
    out = {}
    for row in rows:
        for cell in row["cells"]:
            key = (row["task"], row["variant"], cell["length"], str(cell["asked"]))
            entry = out.setdefault(key, {"task": row["task"], "variant": row["variant"], "length": cell["length"],
                                         "asked": cell["asked"], "steps": cell["steps"], "by_seed": {}})
            entry["by_seed"][row["seed"]] = cell["exact_match"]
    for entry in out.values():
        values = [v for v in entry["by_seed"].values() if v is not None]
        entry["mean"] = statistics.mean(values) if values else None
        entry["min"] = min(values) if values else None
    return list(out.values())


def table(report: dict) -> Table:
    t = Table("task", "variant", "length", "steps", "exact match per seed", "mean",
              title=f"exact match by length and thinking steps on {report['machine']}")
    for s in report["summary"]:
        seeds = ", ".join("-" if v is None else f"{v:.1%}" for v in s["by_seed"].values())
        t.add_row(s["task"], s["variant"], str(s["length"]), f"{s['asked']}" + (f" ({s['steps']})" if s["asked"] ==
                  "auto" and s["steps"] else ""), seeds, "-" if s["mean"] is None else f"{s['mean']:.2%}")
    return t


def plot(report: dict, path: Path) -> None:
    """One panel per task and variant: exact match against steps, a line per length (mean), seeds as dots."""
    plt = pyplot()
    panels = list(dict.fromkeys((s["task"], s["variant"]) for s in report["summary"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (task, variant) in zip(axes[0], panels):
        cells = [s for s in report["summary"] if (s["task"], s["variant"]) == (task, variant) and s["mean"] is not None
                 and s["asked"] != "auto"]
        for length in sorted({s["length"] for s in cells}):
            line = sorted((s for s in cells if s["length"] == length), key=lambda s: s["steps"])
            ax.plot([s["steps"] for s in line], [s["mean"] for s in line], marker="o", label=f"length {length}")
            for s in line:  # every seed's own figure
                values = [v for v in s["by_seed"].values() if v is not None]
                ax.scatter([s["steps"]] * len(values), values, s=8, color="grey", alpha=0.6, zorder=3)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("thinking steps at test time")
        ax.set_ylabel("exact match")
        ax.set_title(f"{task}, {variant}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Does thinking longer solve longer problems? seeds {report['seeds']}\n{report['machine']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = BenchParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(VARIANTS))
    parser.add_argument("--variants", default="default,relative", help="comma-separated names from VARIANTS[task]")
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument("--jobs", type=positive_int, default=1, help="trainings at a time, one torch thread each")
    parser.add_argument("--size", type=positive_int, default=1024, help="problems per length and step count")
    parser.add_argument("--max-samples", type=positive_int, help="cap every run's sample budget")
    parser.add_argument("--json", help="also write the JSON report to this file")
    parser.add_argument("--plot", help="PNG [default: beside --json, with .png; else bench/results/lengths.png]")
    args = parser.parse_args(argv)
    args.plot = args.plot or (str(Path(args.json).with_suffix(".png")) if args.json else "bench/results/lengths.png")
    writable(args.json, "--json")
    writable(args.plot, "--plot")
    seeds = parse_seeds(parser, args.seeds)
    specs = []
    for task in args.tasks.split(","):
        for variant in args.variants.split(","):
            if variant not in VARIANTS.get(task, {}):
                known = "; ".join(f"{t}: {', '.join(v)}" for t, v in VARIANTS.items())
                parser.error(f"no variant {variant!r} for {task!r}; there are {known}")
            budget = {"max_samples": args.max_samples} if args.max_samples else {}
            specs += [{"task": task, "variant": variant, **VARIANTS[task][variant], "seed": seed,
                       "device": args.device, "size": args.size, "threads": 1 if args.jobs > 1 else 0, **budget}
                      for seed in seeds]
    console = Console(stderr=True)
    rows = []
    report = {**machine_record(args.device, args.jobs, 1 if args.jobs > 1 else torch.get_num_threads()),
              "seeds": seeds, "variants": {t: VARIANTS[t] for t in args.tasks.split(",")}, "rows": rows}
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        for row in pool.map(run_one, specs):
            rows.append(row)
            console.print(f"{row['task']} {row['variant']} seed {row['seed']}: {row['samples']:,} samples, held-out "
                          f"{row['held_out_exact_match']:.4f}, {row['seconds']:.0f}s")
            report["summary"] = summarise(rows)
            if args.json:  # every training's figures kept as soon as they exist
                Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    console.print(table(report))
    plot(report, ready_to_write(Path(args.plot)))
    console.print(f"plot: {args.plot}")
    write(report, args.json)


if __name__ == "__main__":
    main()
