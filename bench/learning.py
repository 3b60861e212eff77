"""How fast the default configuration learns each task: samples and seconds to the target, over seeds.

    python -m thinker.bench.learning                                  # every task, seeds 0-3
    python -m thinker.bench.learning --tasks roll,addition --seeds 0,1 --jobs 2
    python -m thinker.bench.learning --json bench/results/learning-cpu.json

Each run is `thinker train TASK --seed S` with the task's defaults (`TrainConfig.for_task`), on the
device given. `--jobs N` runs N trainings at a time, one torch thread each (on 2 cores, two at a
time finish the set sooner than one with two threads; seconds are then per run under that load).
The table goes to stderr; the last stdout line is one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from thinker.bench.args import BenchParser, count, device, positive_int, writable
from thinker.errors import ConfigError
from thinker.machine import describe, label
from thinker.parsing import int_list
from thinker.training import TrainConfig, train

# name -> the flat TrainConfig values a run sets over its task's defaults (task, options, target, ...)
BENCHMARKS = {
    "copy-binary": {"task": "copy", "task_options": {"alphabet": 2}, "target": 1.0},  # the log's 0/1 sequences
    "copy": {"task": "copy", "target": 1.0},  # digits 0..10
    "flip": {"task": "flip", "target": 1.0},
    "roll": {"task": "roll", "target": 0.99},
    "sort": {"task": "sort", "target": 0.99},
    # the figure measured before addition trained to perfection: held-out 99.9%, the old budget
    "addition": {"task": "addition", "target": 0.999, "exhaustive_check": False, "max_samples": 150_000},
    # addition's defaults: held-out 100%, then every one of the 1,002,001 pairs right
    "addition-exhaustive": {"task": "addition"},
    "multiply": {"task": "multiply", "target": 0.99},
}


def spec_for(name: str, seed: int, device: str, **overrides) -> dict:
    """The run `name` with `seed` on `device` (flat config values, plus the bench's name)."""
    return {"name": name, **BENCHMARKS[name], "seed": seed, "device": device, **overrides}


def run_one(spec: dict) -> dict:
    """One training from a flat config dict (`overrides` on the task's defaults); a row of results."""
    torch.set_num_threads(spec.pop("threads"))
    name = spec.pop("name")
    cfg = TrainConfig.for_task(spec.pop("task"), **spec)
    result = train(cfg)
    return {
        "name": name, "task": cfg.task, "seed": cfg.seed, "target": cfg.target, "steps": cfg.model.steps,
        "latent": cfg.model.latent, "params": result.params, "reached": result.samples_to_target is not None,
        "samples_to_target": result.samples_to_target, "seconds_to_target": result.seconds_to_target,
        "exact_match": result.exact_match, "samples": result.samples, "train_seconds": round(result.train_seconds, 2),
        "eval_seconds": round(result.eval_seconds, 2), "step_ms": round(result.step_ms, 3),
        "restarts": result.restarts, "exhaustive": result.exhaustive, "exhaustive_checks": result.exhaustive_checks,
        "exhaustive_check_seconds": round(result.exhaustive_check_seconds, 2),
        "exhaustive_wrong": result.exhaustive_wrong,
        # when the held-out set first reached the target (with an exhaustive check, stopping can come later)
        "held_out_target_samples": next((h["samples"] for h in result.history if h["exact_match"] >= cfg.target),
                                        None),
    }


def run_many(specs: list[dict], jobs: int, threads: int) -> list[dict]:
    """Every spec, `jobs` at a time in spawned processes (in this process when jobs is 1)."""
    console = Console(stderr=True)
    specs = [{**spec, "threads": threads} for spec in specs]
    rows = []

    def done(row: dict) -> None:
        rows.append(row)
        reached = f"{row['samples_to_target']:,} samples" if row["reached"] else "not reached"
        console.print(f"{row['name']} seed {row['seed']}: {reached}, exact match {row['exact_match']:.4f} after "
                      f"{row['samples']:,} samples, {row['train_seconds']:.1f}s")

    if jobs == 1:
        for spec in specs:
            done(run_one(spec))
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            for row in pool.map(run_one, specs):
                done(row)
    return rows


def machine_record(device: str, jobs: int, threads: int) -> dict:
    machine = describe(torch.device(device))
    machine["cpu_threads"] = threads
    return {"device": device, **machine, "machine": label(machine), "jobs": jobs, "threads": threads,
            "date": time.strftime("%Y-%m-%d")}


def table(report: dict) -> Table:
    t = Table("task", "seed", "target", "samples to target", "seconds to target", "exact match", "restarts",
              "every problem right", title=f"default configuration on {report['machine']}, {report['jobs']} at a time")
    for r in report["rows"]:
        t.add_row(r["name"], str(r["seed"]), f"{r['target']:.3f}",
                  f"{r['samples_to_target']:,}" if r["reached"] else f"not reached in {r['samples']:,}",
                  f"{r['seconds_to_target']:.1f}" if r["reached"] else f"({r['train_seconds']:.1f})",
                  f"{r['exact_match']:.4f}", str(r["restarts"]), _checked(r))
    for name in dict.fromkeys(r["name"] for r in report["rows"]):
        reached = [r for r in report["rows"] if r["name"] == name and r["reached"]]
        if reached:
            t.add_row(name, "median", "", f"{statistics.median(r['samples_to_target'] for r in reached):,.0f}",
                      f"{statistics.median(r['seconds_to_target'] for r in reached):.1f}", "", "", "")
    return t


def _checked(row: dict) -> str:
    """`yes (3 checks, 95 s)`: whether an exhaustive check passed, and what the checks cost."""
    if row.get("exhaustive") is None:
        return "-"
    verdict = "yes" if row["exhaustive"] else "no"
    return f"{verdict} ({row['exhaustive_checks']} checks, {row['exhaustive_check_seconds']:.0f} s; held-out " \
           f"target at {row['held_out_target_samples']:,})"


def parse_seeds(parser: argparse.ArgumentParser, text: str) -> list[int]:
    try:
        return int_list(text, "--seeds", example="0,1,2")
    except ConfigError as e:
        parser.error(str(e))


def write(report: dict, path: str | None) -> None:
    """The JSON report to `path` (if given), and as the last line of stdout."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            f.write(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = BenchParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(BENCHMARKS), help=f"from {', '.join(BENCHMARKS)}")
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument("--jobs", type=positive_int, default=1, help="trainings at a time")
    parser.add_argument("--threads", type=count, default=0, help="torch threads per training [default: 1 with --jobs "
                                                                   "above 1, else torch's default]")
    parser.add_argument("--json", help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    seeds = parse_seeds(parser, args.seeds)
    writable(args.json, "--json")
    names = args.tasks.split(",")
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    threads = args.threads or (1 if args.jobs > 1 else torch.get_num_threads())
    specs = [spec_for(name, seed, args.device) for name in names for seed in seeds]
    rows = run_many(specs, args.jobs, threads)
    report = {**machine_record(args.device, args.jobs, threads),
              "defaults": {name: TrainConfig.for_task(**BENCHMARKS[name]).to_dict() for name in names}, "rows": rows}
    Console(stderr=True).print(table(report))
    write(report, args.json)


if __name__ == "__main__":
    main()
