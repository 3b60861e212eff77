"""`thinker bench`: time the training step per variant; a table, then a JSON document as stdout's last line.

    thinker bench --device cpu
    thinker bench --device cuda --json bench/results/h200.json --profile traces/
    thinker bench --device cuda --variants bf16,compile --batch-sizes 1024,4096,16384,65536

The code measuring rows lives in `bench/`; this file turns options into a run and prints the results.
"""

import importlib.util
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console

from thinker.bench.report import document, last_line, log_mlflow, table, write_json
from thinker.bench.suite import run_suite
from thinker.bench.variants import DEFAULT_BATCH_SIZES, DEFAULT_VARIANTS, VARIANTS, parse_batch_sizes, parse_variants
from thinker.cli.options import (
    PATH,
    Device,
    DModel,
    Latent,
    NHeads,
    NLayers,
    Seed,
    Steps,
    TaskOptions,
    TrackingUri,
    UsageError,
    build_config,
    check_task,
    parse_task_options,
)
from thinker.cli.progress import progress_bar, stderr
from thinker.device import configure_torch, pick_device
from thinker.model import Thinker
from thinker.outputs import check_writable_dir, check_writable_file
from thinker.tasks import make_task

WARMUP = {"cuda": 10, "cpu": 3}  # CUDA: compile, cuBLAS heuristics and the allocator settle first


def _defaults(table: dict) -> str:
    return "; ".join(f"{device}: {','.join(map(str, values))}" for device, values in table.items())


def model_info(cfg) -> dict:
    """Sequence length, parameters and FLOPs per token of the benched model (built on CPU, not run)."""
    task = make_task(cfg.task, **cfg.task_options)
    seq_len = int(task.sample(1, torch.Generator().manual_seed(0)).inputs.shape[1])
    model = Thinker(cfg.model_config(task))
    return {"seq_len": seq_len, "params": model.num_params(), "flops_per_token": model.flops_per_token(seq_len)}


def bench_command(
    task: Annotated[str, typer.Option(help="Task name (see `thinker tasks`).")] = "addition",
    device: Device = "auto",
    variants: Annotated[str | None, typer.Option(
        help=f"Comma-separated from {', '.join(VARIANTS)} ('none': scan only). "
             f"[default: {_defaults(DEFAULT_VARIANTS)}; compile takes minutes to build on CPU, "
             "so ask for it there]")] = None,
    batch_sizes: Annotated[str | None, typer.Option(
        help="Batch sizes to scan on the fastest variant, stopping at out-of-memory ('none': no scan). "
             f"[default: {_defaults(DEFAULT_BATCH_SIZES)}]")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size of the variant rows. [default: 64]")] = None,
    steps: Steps = None,
    latent: Latent = None,
    d_model: DModel = None,
    n_heads: NHeads = None,
    n_layers: NLayers = None,
    warmup: Annotated[int | None, typer.Option(
        min=0, help=f"Unmeasured steps first. [default: {WARMUP['cuda']} on CUDA, {WARMUP['cpu']} on CPU]")] = None,
    iters: Annotated[int, typer.Option(min=1, help="Measured steps (at least; see --min-seconds).")] = 10,
    min_seconds: Annotated[float, typer.Option(
        min=0, help="Keep measuring until this long has passed (NVML samples every 0.1 s).")] = 1.0,
    peak_tflops: Annotated[float | None, typer.Option(
        help="Peak TFLOP/s for MFU. [default: GPU datasheet table per precision, else a matmul probe]")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (0: torch's default).")] = None,
    seed: Seed = 0,
    option: TaskOptions = None,
    profile: Annotated[Path | None, typer.Option(**PATH,
        help="Write a torch.profiler chrome trace of a few steps of each variant here (trace-VARIANT.json), "
             "and a table of the ops that took the most time beside it (.txt).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the JSON document here.", **PATH)] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow", help="Log the bench as a run in the `bench` experiment.")]
    = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Benchmark the training step: eager, tf32, bf16, compile and fused AdamW side by side, then a
    batch-size scan. Times data / forward / backward per step, samples/s, tokens/s, memory, MFU and
    (CUDA) GPU utilisation. The table goes to stdout, then the JSON document as the last line."""
    check_task(task)
    variant_names = parse_variants(variants) if variants is not None else None
    scan_sizes = parse_batch_sizes(batch_sizes) if batch_sizes is not None else None
    if peak_tflops is not None and peak_tflops <= 0:  # Typer's ranges cannot exclude their end
        raise UsageError(f"--peak-tflops must be positive, got {peak_tflops}")
    cfg = build_config({"task": task, "task_options": parse_task_options(option)}, dict(  # None: the default
        batch_size=batch_size, steps=steps, latent=latent, d_model=d_model, n_heads=n_heads, n_layers=n_layers,
        threads=threads, device=device, seed=seed))
    model = model_info(cfg)  # a bad task option fails here
    dev, reason = pick_device(device)
    if profile is not None:
        check_writable_dir(profile)
    if json_path is not None:
        check_writable_file(json_path, "--json")
    if mlflow and importlib.util.find_spec("mlflow") is None:
        raise UsageError("--mlflow needs MLflow installed (pip install mlflow)")
    if mlflow:  # a store that cannot be used is found before the work, not after it
        from thinker.sweeps.tracking import client, resolve_tracking_uri  # noqa: PLC0415 - MLflow

        client(resolve_tracking_uri(tracking_uri))
    if variant_names is None:
        variant_names = parse_variants(None, dev.type)
    if scan_sizes is None:
        scan_sizes = parse_batch_sizes(None, dev.type)
    configure_torch(cfg.threads)  # threads for every row and the peak probe; each row sets its precision
    warmup = WARMUP.get(dev.type, WARMUP["cpu"]) if warmup is None else warmup

    stderr.print(f"device: {dev} ({reason}); {model['params']:,} parameters, {model['seq_len']} tokens "
                 f"per sample, {model['flops_per_token'] / 1e6:.2f} MFLOP per token")
    rows, scan = _run(cfg, dev, variant_names, scan_sizes, warmup=warmup, iters=iters,
                      min_seconds=min_seconds, peak_override=peak_tflops, profile_dir=profile,
                      explicit=variants is not None)
    settings = {"warmup": warmup, "iters": iters, "min_seconds": min_seconds}
    doc = document(cfg, dev, reason, model, rows, scan, settings)
    if json_path is not None:
        write_json(doc, json_path)
    out = Console()
    if not out.is_terminal:
        out = Console(width=250)  # a file or pipe: keep table rows on one line
    out.print(table(doc))
    if scan["plateau_batch"]:
        stderr.print(f"batch scan on {scan['base']}: tokens/s stops growing past batch={scan['plateau_batch']}")
    if scan["stopped"]:
        stderr.print(f"batch scan stopped: {scan['stopped']}")
    if mlflow:
        run_id = log_mlflow(doc, tracking_uri)
        stderr.print(f"logged to MLflow experiment 'bench', run {run_id}")
    print(last_line(doc))




def _run(cfg, device: torch.device, variant_names: list[str], scan_sizes: list[int], **settings):
    """run_suite under a Rich progress bar on stderr, one tick per row."""
    progress = progress_bar("rows")

    def on_row(label: str, row: dict | None) -> None:
        if row is None:
            progress.update(task_id, description=f"bench {label}")
            return
        progress.advance(task_id)
        if row["status"] == "ok":
            progress.console.print(f"{label}: {row['tokens_per_s']:,.0f} tokens/s, {row['wall_step_ms']:.3g} ms/step")
        else:
            progress.console.print(f"{label}: {row['status']}")

    with progress:
        task_id = progress.add_task("bench", total=len(variant_names) + len(scan_sizes), extra="")
        return run_suite(cfg, device, variant_names, scan_sizes, on_row=on_row, **settings)
