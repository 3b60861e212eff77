"""The GPU targets read off one run of `bench/gpu.sh`: a table of what was measured against each target.

    python -m thinker.bench.targets OUT_DIR     # the table; OUT_DIR/targets.json and targets.txt beside it
    python -m thinker.bench.targets OUT_DIR --require-files   # and exit 1 if a part's file is missing

Each row is `met`, `missed` or `not measured` (with why: a part that did not run, a row that failed, a
sweep cut short), so the last lines of a device run say what it showed without opening a file. Only
standard-library code: it runs where the parts it reads may have failed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# The 793k tokens/s measured on a GPU before the step was rebuilt (eager, best batch size).
BEFORE_TOKENS_PER_S = 793_000
SWEEP_TRIALS = 50


def _load(path: Path) -> tuple[dict | None, str]:
    """A part's JSON document, or None and why it is missing."""
    if not path.is_file():
        return None, f"no {path.name}: its part did not run or failed"
    try:
        return json.loads(path.read_text()), ""
    except (OSError, ValueError) as e:
        return None, f"{path.name} unreadable ({e})"


def _row(target: str, value: str, verdict: str, note: str = "") -> dict:
    return {"target": target, "measured": value, "verdict": verdict, "note": note}


def _check(ok: bool) -> str:
    return "met" if ok else "missed"


def step_time(bench: dict | None, why: str) -> dict:
    target = "batch-64 addition step, sampling included <= 2.5 ms"
    if bench is None:
        return _row(target, "-", "not measured", why)
    rows = [r for r in bench.get("rows", []) if r.get("batch_size") == 64 and not r["variant"].startswith("batch=")]
    graph = next((r for r in rows if r["variant"] == "graph"), None)
    if graph is None or graph.get("status") != "ok":
        status = graph.get("status") if graph else "no graph row"
        ok = [r for r in rows if r.get("status") == "ok"]
        if not ok:
            return _row(target, "-", "not measured", f"graph: {status}")
        best = min(ok, key=lambda r: r["wall_step_ms"])
        return _row(target, f"{best['wall_step_ms']:.2f} ms ({best['variant']})",
                    _check(best["wall_step_ms"] <= 2.5), f"graph: {status}")
    eager = next((r for r in rows if r["variant"] == "eager" and r.get("status") == "ok"), None)
    note = f"eager {eager['wall_step_ms']:.2f} ms" if eager else ""
    if graph.get("launches_per_step") is not None:
        note += f"; {graph['launches_per_step']:.0f} launches/step"
    return _row(target, f"{graph['wall_step_ms']:.2f} ms (graph)", _check(graph["wall_step_ms"] <= 2.5),
                note.strip("; "))


def throughput(bench: dict | None, why: str) -> dict:
    goal = 5 * BEFORE_TOKENS_PER_S
    target = f"tokens/s at the best batch size >= 5x {BEFORE_TOKENS_PER_S / 1e3:.0f}k = {goal / 1e6:.2f}M"
    if bench is None:
        return _row(target, "-", "not measured", why)
    ok = [r for r in bench.get("rows", []) if r.get("status") == "ok" and r.get("tokens_per_s")]
    if not ok:
        return _row(target, "-", "not measured", "no row measured")
    best = max(ok, key=lambda r: r["tokens_per_s"])
    name = best.get("base") or best["variant"]  # a scan row runs the fastest variant at another batch size
    return _row(target, f"{best['tokens_per_s'] / 1e6:.2f}M ({name}, batch {best['batch_size']})",
                _check(best["tokens_per_s"] >= goal), f"{best['tokens_per_s'] / BEFORE_TOKENS_PER_S:.1f}x before")


def backward_ratio(profile: dict | None, why: str) -> dict:
    target = "backward / forward at batch 4096 <= 3"
    if profile is None:
        return _row(target, "-", "not measured", why)
    ratios = {r["variant"]: r["backward_ms"] / r["forward_ms"] for r in profile.get("rows", [])
              if r.get("status") == "ok" and r.get("forward_ms") and not r["variant"].startswith("batch=")}
    batch = next((r["batch_size"] for r in profile.get("rows", [])), None)
    if not ratios:
        return _row(target, "-", "not measured", "no row measured")
    name = min(ratios, key=ratios.get)
    note = ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
    if batch != 4096:
        note += f" (at batch {batch}, not 4096)"
    return _row(target, f"{ratios[name]:.2f} ({name})", _check(ratios[name] <= 3), note)


def sweep_rows(sweep: dict | None, why: str) -> list[dict]:
    targets = (f"thinker sweep addition --trials {SWEEP_TRIALS} wall time <= 5 min",
               "SM utilisation while trials run >= 80%", "sweep's best exact match >= 0.999")
    if sweep is None or "default" not in sweep or "this" not in sweep.get("default", {}):
        return [_row(t, "-", "not measured", why or "no default part") for t in targets]
    r = sweep["default"]["this"]
    trials = sweep.get("trials", SWEEP_TRIALS)
    cut = r.get("stopped_at_deadline") or r.get("finished", 0) < trials
    wall = r["wall_seconds"]
    if cut:
        wall_row = _row(targets[0], f"{wall / 60:.1f} min", "not reached",
                        f"cut at the time box: {r.get('finished')} of {trials} trials finished")
    else:
        wall_row = _row(targets[0], f"{wall / 60:.1f} min", _check(wall <= 300),
                        f"{r.get('finished')} trials, {r.get('trials_per_hour')} per hour")
    usage = r.get("usage") or {}
    key = "sm_activity" if usage.get("sm_activity") is not None else "gpu_util"
    if usage.get(key) is None:
        use_row = _row(targets[1], "-", "not measured", "no GPU reading (NVML)")
    else:
        use_row = _row(targets[1], f"{usage[key]:.0f}% ({key})", _check(usage[key] >= 80),
                       ", ".join(f"{k} {v}" for k, v in usage.items() if k != key))
    best = r.get("best_exact_match")
    if best is None:
        best_row = _row(targets[2], "-", "not measured", "no trial finished")
    else:
        best_row = _row(targets[2], f"{best:.4f}", _check(best >= 0.999), "cut sweep" if cut else "")
    return [wall_row, use_row, best_row]


def tests_row(out: Path) -> dict:
    target = "GPU tests (pytest -m gpu) pass"
    path = out / "gpu-tests.txt"
    if not path.is_file():
        return _row(target, "-", "not measured", "the tests part did not run")
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    last = lines[-1].strip("= ") if lines else "no output"
    if re.search(r"\d+ (failed|errors?)\b|Interrupted|no tests ran", last) or not re.search(r"\d+ \w+", last):
        return _row(target, last, "missed", "see gpu-tests.txt")
    if not re.search(r"\d+ passed", last):
        return _row(target, last, "not measured", "every GPU test skipped: no CUDA device")
    return _row(target, last, "met")


def machine(out: Path, *docs: dict | None) -> str:
    for doc in docs:
        if doc and doc.get("machine"):
            return doc["machine"]
    smi = out / "nvidia-smi.txt"
    return smi.read_text(errors="replace").splitlines()[0] if smi.is_file() and smi.stat().st_size else "unknown"


def collect(out: Path) -> dict:
    bench, bench_why = _load(out / "bench-cuda.json")
    profile, profile_why = _load(out / "profile-4096" / "bench.json")
    sweep, sweep_why = _load(out / "sweep-default-cuda.json")
    rows = [tests_row(out), step_time(bench, bench_why), throughput(bench, bench_why),
            backward_ratio(profile, profile_why), *sweep_rows(sweep, sweep_why)]
    device = next((d.get("device") for d in (bench, profile) if d and d.get("device")), None)
    return {"machine": machine(out, bench, profile, sweep), "device": device, "rows": rows}


def render(report: dict) -> str:
    rows = report["rows"]
    widths = [max(len(r[k]) for r in rows) for k in ("target", "measured", "verdict")]
    head = f"GPU targets on {report['machine']}" + (
        f" (device {report['device']}: a rehearsal, not GPU figures)" if report.get("device") == "cpu" else "")
    lines = [head]
    for r in rows:
        cells = [r["target"].ljust(widths[0]), r["measured"].ljust(widths[1]), r["verdict"].ljust(widths[2])]
        lines.append("  ".join(cells) + (f"  {r['note']}" if r["note"] else ""))
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("met", "missed", "not reached", "not measured")}
    lines.append(", ".join(f"{n} {v}" for v, n in counts.items() if n))
    return "\n".join(lines)


# What a full run of bench/gpu.sh leaves in OUT_DIR (the sweep's picture is named after the commit).
FILES = ("nvidia-smi.txt", "gpu-tests.txt", "bench-cuda.txt", "bench-cuda.json", "profile-4096/bench.json",
         "profile-4096/trace-eager.json", "profile-4096/trace-eager.txt", "profile-4096/trace-*.txt",
         "sweep-default-cuda.txt", "sweep-default-cuda.json", "sweep-default-cuda-*.png")
TWO = {"profile-4096/trace-*.txt"}  # eager's and the other kernel's


def missing_files(out: Path) -> list[str]:
    """The files of a full run that are not in `out`, or empty, or (JSON) unreadable, or (PNG) not pictures."""
    missing = []
    for pattern in FILES:
        found = sorted(out.glob(pattern))
        if len(found) < (2 if pattern in TWO else 1) or not all(path.stat().st_size for path in found):
            missing.append(f"{pattern}: not written")
        elif pattern.endswith(".json") and _load(found[0])[0] is None:
            missing.append(f"{pattern}: {_load(found[0])[1]}")
        elif pattern.endswith(".png") and not found[0].read_bytes().startswith(b"\x89PNG"):
            missing.append(f"{pattern}: not a PNG")
    return missing


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    require = "--require-files" in args
    args = [a for a in args if a != "--require-files"]
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python -m thinker.bench.targets OUT_DIR [--require-files] (a folder bench/gpu.sh wrote)",
              file=sys.stderr)
        return 2
    out = Path(args[0])
    report = collect(out)
    report["missing_files"] = missing_files(out)
    text = render(report)
    (out / "targets.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "targets.txt").write_text(text + "\n")
    print(text)
    if require and report["missing_files"]:
        for line in report["missing_files"]:
            print(f"targets: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
