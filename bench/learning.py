"""How fast the default configuration learns: samples and seconds to the target, over seeds.

    python -m thinker.bench.learning                       # addition to 99.9% and copy to 100%, seeds 0-3
    python -m thinker.bench.learning --tasks addition --seeds 0,1 --json bench/results/learning-cpu.json

Each run is exactly `thinker train TASK --seed S` with the defaults (the same TrainConfig), on the
device given. The table goes to stderr; the last stdout line is one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from rich.console import Console
from rich.table import Table

from thinker.machine import describe, label
from thinker.training import TrainConfig, train

TARGETS = {"addition": 0.999, "copy": 1.0}


def run(tasks: list[str], seeds: list[int], device: str) -> dict:
    rows = []
    console = Console(stderr=True)
    for task in tasks:
        for seed in seeds:
            cfg = TrainConfig(task=task, seed=seed, device=device, target=TARGETS.get(task, TrainConfig.target))
            result = train(cfg)
            rows.append({
                "task": task, "seed": seed, "target": cfg.target, "reached": result.samples_to_target is not None,
                "samples_to_target": result.samples_to_target, "seconds_to_target": result.seconds_to_target,
                "exact_match": result.exact_match, "samples": result.samples,
                "train_seconds": round(result.train_seconds, 2), "eval_seconds": round(result.eval_seconds, 2),
                "step_ms": round(result.step_ms, 3), "restarts": result.restarts,
            })
            r = rows[-1]
            console.print(f"{task} seed {seed}: exact match {r['exact_match']:.4f} after {r['samples']:,} samples, "
                          f"{r['train_seconds']:.1f}s")
    machine = describe(torch.device(device))
    return {"device": device, **machine, "machine": label(machine), "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d"), "config": TrainConfig().to_dict(), "rows": rows}


def table(report: dict) -> Table:
    t = Table("task", "seed", "target", "samples to target", "seconds to target", "exact match", "restarts",
              title=f"default configuration on {report['machine']}")
    for r in report["rows"]:
        t.add_row(r["task"], str(r["seed"]), f"{r['target']:.3f}",
                  f"{r['samples_to_target']:,}" if r["reached"] else f"not reached in {r['samples']:,}",
                  f"{r['seconds_to_target']:.1f}" if r["reached"] else f"({r['train_seconds']:.1f})",
                  f"{r['exact_match']:.4f}", str(r["restarts"]))
    for task in dict.fromkeys(r["task"] for r in report["rows"]):
        reached = [r for r in report["rows"] if r["task"] == task and r["reached"]]
        if reached:
            t.add_row(task, "median", "", f"{statistics.median(r['samples_to_target'] for r in reached):,.0f}",
                      f"{statistics.median(r['seconds_to_target'] for r in reached):.1f}", "", "")
    return t


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="addition,copy")
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds takes integers like 0,1,2; got {args.seeds!r}")
    report = run(args.tasks.split(","), seeds, args.device)
    Console(stderr=True).print(table(report))
    text = json.dumps(report)
    if args.json:
        with open(args.json, "w") as f:
            f.write(json.dumps(report, indent=2) + "\n")
    print(text)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
