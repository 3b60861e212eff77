#!/usr/bin/env bash
# The GPU figures, each written under OUT_DIR (tests,bench,profile write eight files; sweep three):
#
#     bash bench/gpu.sh OUT_DIR [PARTS]    # from a checkout: PYTHONPATH=. is set here
#
# PARTS, comma-separated (default: all four, in this order; split them over runs when time is short):
# tests     gpu-tests.txt         pytest -m gpu: graph vs eager losses, restore under graphs, no host syncs
#                                 (runs without Optuna and MLflow: the sweep tests are then left out)
# bench     bench-cuda.json/.txt  thinker bench --device cuda: the variants (graph included) with launches,
#                                 kernels and host syncs per step, then the batch-size scan; BENCH_VARIANTS
#                                 [default: eager,tf32,bf16,fused,graph,matmul: not compile, whose cold
#                                 build takes minutes]
# profile   profile-4096/         the eager step at batch 4096 (fused attention) and the matmul one under
#                                 torch.profiler: chrome traces and the ops that took the GPU's time
#                                 (trace-eager.txt, trace-matmul.txt), to find what the backward spends
# sweep     sweep-default-cuda.*  the default 50-trial addition sweep: wall time, trials per hour, GPU
#                                 utilisation and SM activity while it ran (needs optuna and mlflow);
#                                 SWEEP_TIMEOUT=SECONDS stops starting trials after that long,
#                                 SWEEP_DEADLINE=SECONDS stops the sweep (as Ctrl-C) and reports what finished
# nvidia-smi.txt says which machine it was. PYTHON: the interpreter [default: python3]. WHEELS=DIR: wheels
# to install first (into a temporary folder put on PYTHONPATH), for a machine with no package index:
# `bash bench/gpu-wheels.sh DIR` downloads the sweep stack's.
set -u
out=${1:?usage: bash bench/gpu.sh OUT_DIR [tests,bench,profile,sweep]}
parts=",${2:-tests,bench,profile,sweep},"
for part in ${parts//,/ }; do
    case $part in tests|bench|profile|sweep) ;; *) echo "bench/gpu.sh: unknown part '$part'" >&2; exit 2 ;; esac
done
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2  # absolute: the parts run from the checkout's root
if [[ -n ${WHEELS:-} ]]; then
    wheels=$(cd "$WHEELS" 2> /dev/null && pwd) || { echo "bench/gpu.sh: WHEELS: no folder $WHEELS" >&2; exit 2; }
fi
cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || { echo "bench/gpu.sh: nvidia-smi failed: no GPU here?" >&2; exit 2; }
if [[ -n ${WHEELS:-} ]]; then
    site=$(mktemp -d)
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl \
        || { echo "bench/gpu.sh: cannot install the wheels in $WHEELS" >&2; exit 2; }
    export PYTHONPATH=$PYTHONPATH:$site
fi
if [[ $parts == *,tests,* ]]; then
    "$py" -m pytest -m gpu -q -p no:cacheprovider tests > "$out/gpu-tests.txt" 2>&1 || status=1
    tail -n 1 "$out/gpu-tests.txt"
fi
if [[ $parts == *,bench,* ]]; then
    "$py" -m thinker bench --device cuda --variants "${BENCH_VARIANTS:-eager,tf32,bf16,fused,graph,matmul}" \
        --json "$out/bench-cuda.json" > "$out/bench-cuda.txt" 2>&1 || status=1
    tail -n 30 "$out/bench-cuda.txt" | head -n 25
fi
if [[ $parts == *,profile,* ]]; then
    mkdir -p "$out/profile-4096"
    if "$py" -m thinker bench --device cuda --variants eager,matmul --batch-size 4096 --batch-sizes none \
        --profile "$out/profile-4096" > /dev/null 2> "$out/profile-4096/bench.err"; then
        rm -f "$out/profile-4096/bench.err"
        head -n 14 "$out/profile-4096/trace-eager.txt" "$out/profile-4096/trace-matmul.txt"
    else
        status=1
        tail -n 3 "$out/profile-4096/bench.err"
    fi
fi
if [[ $parts == *,sweep,* ]]; then
    if "$py" -c "import optuna, mlflow" 2> /dev/null; then
        "$py" -m thinker.bench.sweep --parts default --json "$out/sweep-default-cuda.json" \
            ${SWEEP_TIMEOUT:+--timeout "$SWEEP_TIMEOUT"} ${SWEEP_DEADLINE:+--deadline "$SWEEP_DEADLINE"} \
            > "$out/sweep-default-cuda.txt" 2>&1 || status=1
        tail -n 12 "$out/sweep-default-cuda.txt"
    else
        echo "bench/gpu.sh: optuna or mlflow missing: no sweep figures (pip install optuna mlflow)" \
            | tee "$out/sweep-default-cuda.txt"
    fi
fi
exit $status
