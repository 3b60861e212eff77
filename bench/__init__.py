"""Profiling of the thinker training step: timing, memory, utilisation and MFU (`thinker bench`).

    thinker bench --device cuda --json bench/results/h200.json

- `variants`: what is compared (eager, tf32, bf16, compile, fused, graph, sdpa, matmul) and what a device cannot run
- `measure`: one row: the trainer's own `TrainStep`, warmed up, timed by phase and by wall clock
- `suite`: every variant, then the batch-size scan; skipped, failed and out-of-memory rows
- `peaks`: peak FLOP/s for MFU (GPU datasheet table, or a matmul probe)
- `monitors`, `nvml`: background readings of CPU%/RSS, or GPU utilisation, memory, power and SM activity
- `report`: the Rich table, the JSON document and the MLflow run
- `learning`, `thinking`: how fast the defaults learn each task, and whether more thinking steps help
- `sweep`: what the sweep service does per hour (`checkouts`: an earlier commit's code beside this one's)
- `args`: the scripts' command lines: bad input is one line and exit code 2

Nothing here imports Optuna or MLflow at import time: GPU machines run the bench without them.
"""
