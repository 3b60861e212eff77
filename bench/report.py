"""Bench output: the Rich table, the JSON document (file and last stdout line) and an MLflow run.

    >>> metric_prefix("batch=256")
    'batch_256'

MLflow comes in through `thinker.sweeps.tracking`, imported inside `log_mlflow` only: GPU machines run
the bench without it installed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from rich.table import Table

from thinker.machine import describe, label

METRICS = ("samples_per_s", "tokens_per_s", "step_ms", "wall_step_ms", "data_ms", "forward_ms", "backward_ms",
           "peak_memory_mb", "reserved_memory_mb", "nvml_memory_mb", "rss_mb", "mfu", "speedup",
           "gpu_util", "sm_activity", "sm_occupancy", "power_w", "cpu_percent", "system_cpu_percent",
           "launches_per_step", "kernels_per_step", "syncs_per_step")


def document(cfg, device: torch.device, device_reason: str, model: dict, rows: list[dict], scan: dict,
             settings: dict) -> dict:
    """The whole result as one JSON-able dict: where it ran, what it ran, and one row per variant."""
    machine = describe(device)
    flat = cfg.to_dict()
    return {
        "device": device.type,
        **machine,
        "machine": label(machine),
        "device_reason": device_reason,
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,  # other work on the box
        "task": cfg.task,
        "config": {k: flat[k] for k in ("task", "task_options", "batch_size", "d_model", "n_heads",
                                         "n_layers", "latent", "steps", "seed", "threads")},
        **model,
        **settings,
        "scan": scan,
        "rows": rows,
    }


def write_json(doc: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def last_line(doc: dict) -> str:
    """The compact document for stdout's last line (machine-readable: `... | tail -1 | jq`)."""
    return json.dumps(doc, separators=(",", ":"))


def table(doc: dict) -> Table:
    cuda = doc["device"] == "cuda"
    t = Table(title=f"thinker bench: {doc['task']} on {doc['machine']}", title_justify="left")
    t.add_column("variant")
    for name in ("batch", "samples/s", "tokens/s", "step ms", "wall ms", "data ms", "fwd ms", "bwd ms",
                 "peak MB", "MFU", "speed-up"):
        t.add_column(name, justify="right")
    extra = (("GPU %", "gpu_util", _num), ("SM %", "sm_activity", _num), ("W", "power_w", _num),
             ("launches", "launches_per_step", _num), ("syncs", "syncs_per_step", _ms)) if cuda \
        else (("CPU %", "cpu_percent", _num), ("machine CPU %", "system_cpu_percent", _num))
    for name, _, _ in extra:
        t.add_column(name, justify="right")
    t.add_column("status")
    for r in doc["rows"]:
        status = f"{r['status']} (on {r['base']})" if r.get("base") else r["status"]
        if r.get("note"):
            status = f"{status}; {r['note']}"
        t.add_row(r["variant"], str(r["batch_size"]), _num(r["samples_per_s"]), _num(r["tokens_per_s"]),
                  _ms(r["step_ms"]), _ms(r["wall_step_ms"]), _ms(r["data_ms"]), _ms(r["forward_ms"]),
                  _ms(r["backward_ms"]), _num(r["peak_memory_mb"]), _pct(r["mfu"]), _times(r["speedup"]),
                  *(fmt(r.get(key)) for _, key, fmt in extra), status)
    return t


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}" if x < 10 else f"{x:,.1f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"


def _times(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def metric_prefix(variant: str) -> str:
    """MLflow metric names allow letters, digits, `_-./ ` only."""
    return re.sub(r"[^\w\-./ ]", "_", variant)


def log_mlflow(doc: dict, tracking_uri: str | None = None) -> str:
    """Log the bench as one run in the `bench` experiment; returns the run id.

    The tracking URI is `tracking_uri`, else MLFLOW_TRACKING_URI, else MLflow's default.
    """
    from thinker.sweeps.tracking import log_run  # noqa: PLC0415 - MLflow only when asked for

    params = {**doc["config"], "device": doc["device"], "gpu": doc["gpu"], "torch": doc["torch"],
              "cpu": doc["cpu"], "cpu_threads": doc["cpu_threads"], "warmup": doc.get("warmup"),
              "iters": doc.get("iters")}
    params = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
    metrics = {f"{metric_prefix(r['variant'])}/{key}": float(r[key])
               for r in doc["rows"] if r["status"] == "ok"
               for key in METRICS if r.get(key) is not None}
    tags = {f"status/{metric_prefix(r['variant'])}": r["status"] for r in doc["rows"]}
    return log_run(tracking_uri, "bench", f"{doc['task']}-{doc['gpu'] or 'cpu'}", params, metrics, tags, doc,
                   "bench.json")
