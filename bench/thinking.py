"""Does thinking longer help? Samples to target and final exact match against thinking steps and memory.

    python -m thinker.bench.thinking --jobs 2                    # roll, addition, multiply; seeds 0-3
    python -m thinker.bench.thinking --tasks roll --seeds 0,1 --json out.json   # plot: out.png

For each task, the task's defaults with `steps` 1, 2 and 4 (with 4 memory tokens) and with no memory
tokens (`latent` 0, 2 steps). The stack's weights are shared by every step, so all variants have the
same parameters; memory adds `latent x d_model` of them (256 of ~100k), and every extra step costs
one more pass through the stack per sample. The table goes to stderr, the plot to a PNG, and the
last stdout line is one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from thinker.bench.args import BenchParser, device, positive_int, writable
from thinker.bench.learning import BENCHMARKS, machine_record, parse_seeds, run_many, spec_for, write
from thinker.errors import one_line
from thinker.outputs import ready_to_write
from thinker.plotting import pyplot

TASKS = ("roll", "addition", "multiply")
VARIANTS = {"1 step": {"steps": 1}, "2 steps": {"steps": 2}, "4 steps": {"steps": 4},
            "2 steps, no memory": {"steps": 2, "latent": 0}}


def summarise(rows: list[dict]) -> list[dict]:
    """Per task and variant: seeds that reached the target, median samples to it, mean final exact match."""
    out = []
    for task in dict.fromkeys(r["name"] for r in rows):
        for variant in VARIANTS:
            group = [r for r in rows if r["name"] == task and r["variant"] == variant]
            if not group:
                continue
            reached = [r["samples_to_target"] for r in group if r["reached"]]
            out.append({"task": task, "variant": variant, "seeds": len(group), "reached": len(reached),
                        "median_samples_to_target": statistics.median(reached) if reached else None,
                        "mean_exact_match": statistics.mean(r["exact_match"] for r in group),
                        "median_seconds": statistics.median(r["train_seconds"] for r in group),
                        "params": group[0]["params"]})
    return out


def table(report: dict) -> Table:
    t = Table("task", "variant", "reached", "median samples to target", "mean final exact match",
              "median seconds", "params", title=f"thinking steps and memory on {report['machine']}")
    for s in report["summary"]:
        samples = f"{s['median_samples_to_target']:,.0f}" if s["median_samples_to_target"] else "-"
        t.add_row(s["task"], s["variant"], f"{s['reached']}/{s['seeds']}", samples, f"{s['mean_exact_match']:.4f}",
                  f"{s['median_seconds']:.0f}", f"{s['params']:,}")
    return t


def plot(report: dict, path: Path) -> None:
    """Two rows of panels per task: samples to target per seed (x: not reached), final exact match."""
    plt = pyplot()

    tasks = list(dict.fromkeys(r["name"] for r in report["rows"]))
    fig, axes = plt.subplots(2, len(tasks), figsize=(max(4.2 * len(tasks), 6.5), 6.5), squeeze=False)
    names = list(VARIANTS)
    for col, task in enumerate(tasks):
        budget = max(r["samples"] for r in report["rows"] if r["name"] == task)
        top, bottom = axes[0][col], axes[1][col]
        for x, variant in enumerate(names):
            group = [r for r in report["rows"] if r["name"] == task and r["variant"] == variant]
            spread = {r["seed"]: x + 0.08 * (i - (len(group) - 1) / 2) for i, r in enumerate(group)}  # seeds apart
            reached = [r for r in group if r["reached"]]
            missed = [r for r in group if not r["reached"]]
            top.scatter([spread[r["seed"]] for r in reached], [r["samples_to_target"] for r in reached],
                        color="tab:blue", zorder=3)
            top.scatter([spread[r["seed"]] for r in missed], [budget] * len(missed), marker="x", color="tab:red",
                        zorder=3)
            if reached:
                top.hlines(statistics.median(r["samples_to_target"] for r in reached), x - 0.3, x + 0.3,
                           color="tab:blue")
            bottom.scatter([spread[r["seed"]] for r in group], [r["exact_match"] for r in group], color="tab:green",
                           zorder=3)
        target = next(r["target"] for r in report["rows"] if r["name"] == task)
        top.set_title(f"{task}: samples to {target:.1%} (x: not reached)", fontsize=10)
        top.set_ylim(0, budget * 1.08)
        bottom.set_title(f"{task}: best held-out exact match", fontsize=10)
        bottom.set_ylim(min(0.9, min(r["exact_match"] for r in report["rows"] if r["name"] == task) - 0.02), 1.005)
        for ax in (top, bottom):
            ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Does thinking longer help? seeds {report['seeds']}\n{report['machine']}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = BenchParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument("--jobs", type=positive_int, default=2, help="trainings at a time, one torch thread each")
    parser.add_argument("--max-samples", type=positive_int, help="cap every run's sample budget [default: the task's]")
    parser.add_argument("--variants", default=";".join(VARIANTS), help="semicolon-separated names from VARIANTS")
    parser.add_argument("--json", help="also write the JSON report to this file")
    parser.add_argument("--plot", help="PNG of the results [default: beside --json, with .png; without it, "
                                       "bench/results/thinking.png]")
    parser.add_argument("--from-json", help="comma-separated reports of earlier runs: join them, train nothing")
    args = parser.parse_args(argv)
    if args.plot is None:  # a run written elsewhere must not overwrite the committed picture
        args.plot = str(Path(args.json).with_suffix(".png")) if args.json else "bench/results/thinking.png"
    writable(args.json, "--json")
    writable(args.plot, "--plot")
    if args.from_json is not None:
        try:
            reports = [json.loads(Path(p).read_text()) for p in args.from_json.split(",")]
            report = {**reports[0], "rows": [r for rep in reports for r in rep["rows"]]}
            report["summary"] = summarise(report["rows"])  # what finish() reads of every row
            table(report)
            if not report["summary"]:
                raise KeyError("rows")
        except (OSError, ValueError) as e:
            parser.error(f"--from-json: {e}")
        except (KeyError, TypeError, IndexError, AttributeError) as e:
            parser.error(f"--from-json: not a report of this benchmark ({one_line(e)})")
        return finish(report, args)
    seeds = parse_seeds(parser, args.seeds)
    names = args.tasks.split(",")
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    variants = {v: VARIANTS[v] for v in args.variants.split(";") if v in VARIANTS}
    if len(variants) != len(args.variants.split(";")):
        parser.error(f"--variants takes names from: {'; '.join(VARIANTS)}")
    specs = [spec_for(name, seed, args.device, **overrides, variant=variant,
                      **({"max_samples": args.max_samples} if args.max_samples else {}))
             for name in names for variant, overrides in variants.items() for seed in seeds]
    labels = [spec.pop("variant") for spec in specs]
    rows = [{**row, "variant": label} for row, label in zip(run_many(specs, args.jobs, 1), labels)]
    finish({**machine_record(args.device, args.jobs, 1), "seeds": seeds, "variants": VARIANTS, "rows": rows}, args)


def finish(report: dict, args: argparse.Namespace) -> None:
    """Summary table, plot and JSON of a set of runs."""
    report["summary"] = summarise(report["rows"])
    Console(stderr=True).print(table(report))
    if args.plot:
        plot(report, ready_to_write(Path(args.plot)))
        Console(stderr=True).print(f"plot: {args.plot}")
    write(report, args.json)


if __name__ == "__main__":
    main()
