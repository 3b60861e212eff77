"""Benchmarks of the sweep service: a full study, pruning's savings, logging overhead, workers.

    python -m thinker.bench.sweep                          # everything (about an hour on 2 cores)
    python -m thinker.bench.sweep --parts overhead,workers # the quick parts
    python -m thinker.bench.sweep --json bench/results/sweep-cpu.json
    python -m thinker.bench.sweep --parts default --against 9641b74   # this checkout vs an earlier commit
    python -m thinker.bench.sweep --parts default --timeout 420       # no trial starts after 7 minutes
    python -m thinker.bench.sweep --parts default --timeout 300 --deadline 420  # and stopped after 7

Parts:
- `default`: `thinker sweep addition --trials N` with every default (device auto, trials per device
  auto) exactly as a user runs it: wall time, trials per hour, best value, and the machine's use while
  it ran (NVML's GPU utilisation and SM activity on CUDA, whole-machine CPU% otherwise). With
  `--against REF` the same sweep first runs from a git worktree of REF, on the same machine in the
  same invocation, and the table gives the speed-up.
- `study`: `thinker sweep addition --trials 50` as a user runs it (defaults: TPE, Hyperband), then the
  same study with `--pruner none`; wall time, best exact match, samples used by each.
- `overhead`: one trial's training speed with its MLflow run attached over the same run with no
  logger (median of alternating repeats).
- `workers`: trials per hour of one short sweep with `--jobs 1` and with `--jobs 2`.
- `load`: 1, 2 and 4 local workers on one study in Optuna's journal file (the storage Optuna
  recommends for many processes on one machine): trials per hour, and any "database is locked".

Each sweep runs in a fresh temporary directory with the default stores (optuna.db, mlflow.db).
The table goes to stderr; the last stdout line is one JSON document.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from thinker.bench import best_check
from thinker.bench.args import BenchParser, device, positive_int, seconds, writable
from thinker.bench.checkouts import ROOT, commit_of, worktree
from thinker.bench.measure import usage_monitor
from thinker.bench.runs import SweepFailed, sweep
from thinker.device import pick_device
from thinker.machine import describe, label
from thinker.outputs import ready_to_write
from thinker.tasks import TASKS
from thinker.training import TrainConfig, train

console = Console(stderr=True)


def terminated(signum, frame) -> None:
    """SIGTERM: unwind as Ctrl-C does, so the sweep is stopped and a temporary worktree removed."""
    raise KeyboardInterrupt


def default_part(task: str, trials: int, device: str, runs_on: torch.device, against: str | None,
                 timeout: float | None = None, pictures: Path | None = None, deadline: float | None = None,
                 check: bool = False) -> dict:
    """The default sweep as a user runs it (`--device device`, which picks `runs_on`), from this checkout
    and optionally from `against` first; with `timeout`, no trial starts after that many seconds; with
    `deadline`, each sweep is stopped (as by Ctrl-C) after that many. With `pictures` (a path), each
    sweep's study is drawn beside it as STEM-COMMIT.png. With `check`, after each sweep every trial at its
    target is scored on every problem by `bench.best_check`, apart from the sweep's own scoring, and the
    result says whether the sweep's reported best is the exhaustive best."""
    args = [task, "--trials", str(trials)] + ([] if device == "auto" else ["--device", device])
    args += [] if timeout is None else ["--timeout", f"{timeout:g}"]
    sources: list[tuple[str, contextlib.AbstractContextManager]] = []
    if against:
        sources.append(("against", worktree(against)))
    sources.append(("this", contextlib.nullcontext(ROOT)))
    results: dict = {"command": f"thinker sweep {' '.join(args)}"}
    for name, checkout in sources:
        with checkout as source:
            commit = commit_of(source)
            console.print(f"default: {results['command']} at {commit or 'an unknown commit'} ...")
            # a sweep takes minutes: one reading a second is plenty
            plot = pictures.with_name(f"{pictures.stem}-{commit or 'checkout'}.png") if pictures else None
            s = sweep(args, source=source, monitor=usage_monitor(runs_on, interval=1.0), plot=plot, deadline=deadline,
                      inspect=best_check.check if check else None)
        results[name] = {"commit": commit, "trials_per_hour": round(s["finished"] / s["wall_seconds"] * 3600, 1),
                         **{k: s.get(k) for k in ("status", "stopped_at_deadline", "wall_seconds", "finished",
                                                  "complete", "pruned", "failed", "interrupted", "samples_total",
                                                  "best_value", "best_exact_match", "best_problems", "best_wrong",
                                                  "best_verified_problems", "best_verified_wrong", "usage",
                                                  "check")}}
        if plot is not None:
            results[name]["plot"] = None if s.get("plot_error") else plot.name
            results[name]["plot_error"] = s.get("plot_error")
        console.print(f"  {results[name]}")
    if against:
        results["speedup"] = round(results["against"]["wall_seconds"] / results["this"]["wall_seconds"], 3)
    return results


def study_part(trials: int) -> dict:
    results = {}
    for pruner in ("hyperband", "none"):
        console.print(f"study: thinker sweep addition --trials {trials} --pruner {pruner} ...")
        s = sweep(["addition", "--trials", str(trials), "--pruner", pruner, "--device", "cpu"])
        results[pruner] = {k: s.get(k) for k in ("wall_seconds", "sweep_seconds", "finished", "complete",
                                                 "pruned", "failed", "samples_total", "best_value",
                                                 "best_exact_match", "best_params")}
        console.print(f"  {results[pruner]}")
    used, unpruned = results["hyperband"]["samples_total"], results["none"]["samples_total"]
    results["samples_saved"] = round(1 - used / unpruned, 4) if unpruned else None
    return results


def overhead_part(repeats: int, max_samples: int) -> dict:
    """Same config, same seed: NullLogger vs a live MLflow child run on the default SQLite store."""
    from thinker.sweeps.tracking import Tracker  # noqa: PLC0415 - MLflow only for this part

    cfg = TrainConfig(task="addition", device="cpu", max_samples=max_samples, target=2.0, seed=0)
    speeds: dict[str, list[float]] = {"none": [], "mlflow": []}
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", "overhead")
        parent = tracker.start_parent("overhead", {})
        for i in range(repeats):
            for mode in ("none", "mlflow"):
                run = tracker.start_trial(parent, i, cfg.to_dict(), {}) if mode == "mlflow" else None
                started = time.perf_counter()
                result = train(cfg, logger=run)
                if run is not None:
                    run.finish("COMPLETE")  # flushing is part of the cost
                seconds = time.perf_counter() - started
                speeds[mode].append(result.samples / seconds)
                console.print(f"overhead: {mode:6s} {result.samples / seconds:8.0f} samples/s")
    ratio = statistics.median(speeds["mlflow"]) / statistics.median(speeds["none"])
    return {"samples_per_s": {k: [round(v) for v in vs] for k, vs in speeds.items()},
            "ratio": round(ratio, 4), "max_samples": max_samples, "repeats": repeats}


def workers_part(trials: int, max_samples: int) -> dict:
    results = {}
    for jobs in (1, 2):
        console.print(f"workers: {trials} trials of addition at {max_samples} samples with --jobs {jobs} ...")
        s = sweep(["addition", "--trials", str(trials), "--max-samples", str(max_samples), "--pruner", "none",
                   "--jobs", str(jobs), "--device", "cpu"])
        results[f"jobs_{jobs}"] = {"wall_seconds": s["wall_seconds"], "finished": s["finished"],
                                   "trials_per_hour": round(s["finished"] / s["wall_seconds"] * 3600, 1)}
        console.print(f"  {results[f'jobs_{jobs}']}")
    results["speedup"] = round(results["jobs_2"]["trials_per_hour"] / results["jobs_1"]["trials_per_hour"], 3)
    return results


def load_part(trials: int, max_samples: int) -> dict:
    results = {}
    for jobs in (1, 2, 4):
        console.print(f"load: {trials} trials of copy at {max_samples} samples, journal storage, --jobs {jobs} ...")
        s = sweep(["copy", "--trials", str(trials), "--max-samples", str(max_samples), "--pruner", "none",
                   "--storage", "journal:optuna.log", "--jobs", str(jobs), "--device", "cpu"])
        results[f"jobs_{jobs}"] = {"wall_seconds": s["wall_seconds"], "finished": s["finished"],
                                   "failed": s["failed"], "locked": s.get("locked", False),
                                   "trials_per_hour": round(s["finished"] / s["wall_seconds"] * 3600, 1)}
        console.print(f"  {results[f'jobs_{jobs}']}")
    return results


def table(report: dict) -> Table:
    t = Table("measure", "value", "target", title="sweep service on this machine", box=None)
    if "default" in report:
        d = report["default"]
        for name in ("against", "this"):
            if name in d:
                r, use = d[name], d[name]["usage"]
                where = f"{d['command']} at {r['commit'] or 'an unknown commit'}"
                cut = " (stopped at --deadline)" if r.get("stopped_at_deadline") else ""
                t.add_row(f"{where}: wall time", f"{r['wall_seconds'] / 60:.1f} min{cut}", "")
                t.add_row("  trials per hour", f"{r['trials_per_hour']}", f"{r['finished']} finished, "
                          f"{r['complete']} complete, {r['pruned']} pruned, {r['failed']} failed"
                          + (f" ({r['interrupted']} of them interrupted)" if r.get("interrupted") else ""))
                t.add_row("  best exact match", f"{r['best_exact_match']}", "≥ 0.999")
                busy = " · ".join(f"{k} {v}" for k, v in use.items() if k.endswith(("percent", "util", "activity")))
                t.add_row("  machine use while it ran", busy or "-", "")
        if "speedup" in d:
            t.add_row("wall-time speed-up over the earlier commit", f"{d['speedup']:.2f}×", "≥ 1.6× (CPU)")
    if "study" in report:
        s = report["study"]
        for pruner in ("hyperband", "none"):
            r = s[pruner]
            t.add_row(f"sweep addition --trials {report['trials']} ({pruner}) wall time",
                      f"{r['wall_seconds'] / 60:.1f} min", "≤ 20 min" if pruner == "hyperband" else "")
            t.add_row(f"  best exact match ({pruner})", f"{r['best_exact_match']}", "≥ 0.999")
            t.add_row(f"  samples used ({pruner})", f"{r['samples_total']:,}", "")
            states = f"{r['complete']} / {r['pruned']} / {r['failed']}"
            t.add_row(f"  complete / pruned / failed ({pruner})", states, "")
        t.add_row("samples saved by pruning", f"{s['samples_saved']:.1%}" if s["samples_saved"] is not None else "-",
                  "≥ 50%")
    if "overhead" in report:
        t.add_row("trial speed with MLflow ÷ without", f"{report['overhead']['ratio']:.3f}", "≥ 0.97")
    if "workers" in report:
        w = report["workers"]
        t.add_row("trials per hour, 1 worker", f"{w['jobs_1']['trials_per_hour']}", "")
        t.add_row("trials per hour, 2 workers", f"{w['jobs_2']['trials_per_hour']}", "")
        t.add_row("two workers ÷ one", f"{w['speedup']:.2f}×", "≥ 1.7×")
    if "load" in report:
        for jobs in (1, 2, 4):
            r = report["load"][f"jobs_{jobs}"]
            t.add_row(f"journal storage, {jobs} worker(s): trials per hour", f"{r['trials_per_hour']}",
                      f"{r['finished']} finished, {r['failed']} failed, locked: {r['locked']}")
    return t


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, terminated)
    try:
        run(argv)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except SweepFailed as e:
        print(f"bench: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def run(argv: list[str] | None) -> None:
    parser = BenchParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="study,overhead,workers")
    parser.add_argument("--trials", type=positive_int, default=50)
    parser.add_argument("--task", default="addition", help="the task of the `default` part")
    parser.add_argument("--device", type=device, default="auto",
                        help="the `default` part's --device (auto: as a user's default)")
    parser.add_argument("--against", metavar="REF", help="`default` part: also run the sweep at this git commit")
    parser.add_argument("--timeout", type=seconds, metavar="SECONDS",
                        help="`default` part: start no trial after this long (the sweep's --timeout)")
    parser.add_argument("--deadline", type=seconds, metavar="SECONDS",
                        help="`default` part: stop each sweep after this long, as Ctrl-C does, and report what it "
                             "finished")
    parser.add_argument("--check", action="store_true",
                        help="`default` part: score every trial at the target on every problem after each sweep "
                             "(bench.best_check) and say whether the reported best is the exhaustive best")
    parser.add_argument("--json", help="also write the JSON report to this file (and, with the `default` "
                                       "part, each sweep's study picture beside it: STEM-COMMIT.png)")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    unknown = set(parts) - {"default", "study", "overhead", "workers", "load"}
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    if args.against and "default" not in parts:
        parser.error("--against compares the `default` part: add it to --parts")
    if args.task not in TASKS:
        parser.error(f"unknown task {args.task!r}; choose from: {', '.join(TASKS)}")
    runs_on, _ = pick_device(args.device)  # what the sweeps will run on (the name was checked)
    if writable(args.json, "--json"):  # checked now, not after an hour of sweeps; the study pictures go there first
        ready_to_write(Path(args.json))
    machine = describe(runs_on)
    report: dict = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), **machine, "machine": label(machine),
                    "trials": args.trials}
    pictures = Path(args.json) if args.json else None
    measures = {"default": lambda: default_part(args.task, args.trials, args.device, runs_on, args.against,
                                                args.timeout, pictures=pictures, deadline=args.deadline,
                                                check=args.check),
                "overhead": lambda: overhead_part(repeats=3, max_samples=40_000),
                "workers": lambda: workers_part(trials=8, max_samples=30_000),
                "load": lambda: load_part(trials=12, max_samples=8192),
                "study": lambda: study_part(args.trials)}
    for part in ("default", "overhead", "workers", "load", "study"):
        if part in parts:
            report[part] = measures[part]()
            if args.json:  # each part's figures are kept as soon as they exist
                Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    console.print(table(report))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
