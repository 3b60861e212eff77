"""Run the variants, then the batch-size scan: one row each, and one bad variant never ends the run.

    >>> cfg = TrainConfig.from_dict({"task": "copy", "device": "cpu", "d_model": 16, "n_heads": 2, "n_layers": 1})
    >>> rows, scan = run_suite(cfg, torch.device("cpu"), ["eager", "tf32"], [128], warmup=1, iters=2,
    ...                        peak_override=1.0)
    >>> [(r["variant"], r["status"]) for r in rows]
    [('eager', 'ok'), ('tf32', 'skipped: tf32 needs CUDA'), ('batch=128', 'ok')]

A variant the device cannot run is a `skipped: reason` row; running out of GPU memory, or a CPU
row that cannot fit in the machine's memory (`thinker.training.memory`), is an `oom` row, and in the
scan it ends the scan. The scan runs on the fastest variant measured (eager when
none ran), so it answers "how far does batch size take the best configuration".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from thinker.bench.measure import blank_row, measure
from thinker.bench.peaks import peak_tflops
from thinker.bench.variants import VARIANTS, Variant, skip_reason
from thinker.device import configure_torch, current, release_memory
from thinker.errors import one_line
from thinker.training import TrainConfig
from thinker.training.memory import WontFit

PLATEAU_GAIN = 1.10  # a scan step adding under 10% tokens/s: throughput has stopped growing
OnRow = Callable[[str, "dict | None"], None]  # (label, None) before a row, (label, row) after


def run_suite(cfg: TrainConfig, device: torch.device, variants: list[str], batch_sizes: list[int], *,
              warmup: int, iters: int, min_seconds: float = 0.0, peak_override: float | None = None,
              profile_dir: Path | None = None, on_row: OnRow | None = None, explicit: bool = False
              ) -> tuple[list[dict], dict]:
    """All rows (variants first, then `batch=N` scan rows) and a summary of the scan.

    `explicit`: the variants were asked for by name, so run even those skipped by default.
    """
    on_row = on_row or (lambda label, row: None)
    settings = dict(warmup=warmup, iters=iters, min_seconds=min_seconds, peak_override=peak_override,
                    explicit=explicit)
    rows: list[dict] = []
    for name in variants:
        on_row(name, None)
        row = run_one(VARIANTS[name], name, cfg, device, profile_dir=profile_dir, **settings)
        rows.append(row)
        on_row(name, row)

    measured = [r for r in rows if r["status"] == "ok"]
    base = max(measured, key=lambda r: r["tokens_per_s"])["variant"] if measured else "eager"
    scan = {"base": base, "batch_sizes": batch_sizes, "plateau_batch": None, "stopped": None}
    for batch_size in batch_sizes:
        label = f"batch={batch_size}"
        on_row(label, None)
        traced = any(r.get("trace") for r in rows)  # each variant row's trace, else the first scan row's
        row = run_one(VARIANTS[base], label, VARIANTS[base].config(cfg, batch_size), device,
                      profile_dir=None if traced else profile_dir, **settings)
        row["base"] = base
        rows.append(row)
        on_row(label, row)
        if row["status"] != "ok":
            scan["stopped"] = f"{row['status']} at {label}"
            break

    _speedups(rows, cfg.batch_size)
    scan["plateau_batch"] = _plateau(rows)
    return rows, scan


def run_one(variant: Variant, label: str, cfg: TrainConfig, device: torch.device, *, warmup: int, iters: int,
            min_seconds: float, peak_override: float | None, profile_dir: Path | None, explicit: bool = False) -> dict:
    """Measure one row, turning "cannot run here" and "out of memory" into a status, not a crash."""
    cfg = variant.config(cfg)
    reason = skip_reason(variant, device, explicit)
    if reason:
        return blank_row(label, variant, cfg, device, f"skipped: {reason}")
    release_memory(device)
    configure_torch(cfg.threads, variant.precision)  # the top of this row: TF32 on for the tf32 variant only
    status = "ok"
    try:
        peak = peak_tflops(device, variant.precision, peak_override)
        with current(device):
            row = measure(variant, cfg, device, warmup=warmup, iters=iters, min_seconds=min_seconds,
                          peak=peak, label=label, profile_dir=profile_dir)
    except (torch.cuda.OutOfMemoryError, WontFit):
        status = "oom"
    except Exception as e:  # a failing torch.compile, an op missing for bf16 on this CPU, ...
        if os.environ.get("THINKER_DEBUG"):
            raise
        status = f"skipped: {'compile failed' if variant.compile else 'failed'}: {one_line(e, 100)}"
    finally:
        if variant.compile:
            torch.compiler.reset()  # drop compiled graphs: later rows start clean
    if status != "ok":
        release_memory(device)  # after the except block: the traceback no longer holds the tensors
        row = blank_row(label, variant, cfg, device, status)
    return row


def _speedups(rows: list[dict], batch_size: int) -> None:
    """tokens/s over eager fp32 at the bench's batch size (from the scan if eager was not a variant)."""
    baseline = next((r for r in rows if r["status"] == "ok" and (
        r["variant"] == "eager" or (r["base"] == "eager" and r["batch_size"] == batch_size))), None)
    for row in rows:
        if baseline is not None and row["status"] == "ok":
            row["speedup"] = row["tokens_per_s"] / baseline["tokens_per_s"]


def _plateau(rows: list[dict]) -> int | None:
    """Mark scan rows that add under 10% tokens/s; return the batch size where growth stopped."""
    plateau, previous = None, None
    for row in rows:
        if row["base"] is None or row["status"] != "ok":
            continue
        if previous is not None:
            gain = row["tokens_per_s"] / previous["tokens_per_s"]
            if gain < PLATEAU_GAIN:
                row["note"] = f"{gain - 1:+.0%} tokens/s over batch={previous['batch_size']}: stopped growing"
                plateau = plateau or previous["batch_size"]
        previous = row
    return plateau
