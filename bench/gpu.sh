#!/usr/bin/env bash
# The GPU figures in one go, each written under OUT_DIR:
#
#     bash bench/gpu.sh OUT_DIR            # from a checkout: PYTHONPATH=. is set here
#
# nvidia-smi.txt         the machine
# gpu-tests.txt          pytest -m gpu: graph vs eager losses, restore under graphs, no host syncs
# bench-cuda.json/.txt   thinker bench --device cuda: every variant (graph included) with launches,
#                        kernels and host syncs per step, then the batch-size scan
# profile-4096/          the eager step at batch 4096 under torch.profiler: a chrome trace and the ops
#                        that took the GPU's time (trace-eager.txt), to find what the backward spends
# sweep-default-cuda.*   the default 50-trial addition sweep: wall time, trials per hour, GPU
#                        utilisation and SM activity while it ran (needs optuna and mlflow)
set -u
out=${1:?usage: bash bench/gpu.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
py=${PYTHON:-python}
status=0
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || { echo "bench/gpu.sh: nvidia-smi failed: no GPU here?" >&2; exit 2; }
"$py" -m pytest -m gpu -q -p no:cacheprovider tests > "$out/gpu-tests.txt" 2>&1 || status=1
tail -n 1 "$out/gpu-tests.txt"
"$py" -m thinker bench --device cuda --json "$out/bench-cuda.json" > "$out/bench-cuda.txt" 2>&1 || status=1
tail -n 30 "$out/bench-cuda.txt" | head -n 25
"$py" -m thinker bench --device cuda --variants eager --batch-size 4096 --batch-sizes none \
    --profile "$out/profile-4096" > "$out/profile-4096.txt" 2>&1 || status=1
head -n 14 "$out/profile-4096/trace-eager.txt" 2> /dev/null
if "$py" -c "import optuna, mlflow" 2> /dev/null; then
    "$py" -m thinker.bench.sweep --parts default --json "$out/sweep-default-cuda.json" \
        > "$out/sweep-default-cuda.txt" 2>&1 || status=1
    tail -n 12 "$out/sweep-default-cuda.txt"
else
    echo "bench/gpu.sh: optuna or mlflow missing: no sweep figures (pip install optuna mlflow)" | tee "$out/sweep-default-cuda.txt"
fi
exit $status
