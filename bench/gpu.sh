#!/usr/bin/env bash
# Every GPU figure from one call, each part's files under OUT_DIR as soon as that part ends, then a table
# of the GPU targets (targets.txt, targets.json), measured or not, as the last lines:
#
#     bash bench/gpu.sh OUT_DIR [PARTS]    # from a checkout: PYTHONPATH=. is set here
#
# PARTS, comma-separated (default: all four, in this order):
# tests     gpu-tests.txt         pytest -m gpu: graph vs eager losses, restore under graphs, no host syncs,
#                                 a failed capture that falls back (without Optuna and MLflow the sweep
#                                 tests are left out)
# bench     bench-cuda.json/.txt  thinker bench: the variants (graph included) with launches, kernels and
#                                 host syncs per step, then the batch-size scan; BENCH_VARIANTS [default:
#                                 eager,tf32,bf16,fused,graph,matmul: not compile, whose cold build takes
#                                 minutes]; BENCH_ARGS: more options for it
# profile   profile-4096/         the eager and matmul steps (PROFILE_VARIANTS) at batch PROFILE_BATCH [4096] under
#                                 torch.profiler: chrome traces, the ops that took the GPU's time
#                                 (trace-*.txt) and their figures (bench.json)
# sweep     sweep-default-cuda.*  the default 50-trial addition sweep: wall time, trials per hour, GPU
#                                 utilisation and SM activity while it ran (needs optuna and mlflow); it
#                                 gets what is left of BUDGET: no trial starts after SWEEP_TIMEOUT seconds,
#                                 and it is stopped (as Ctrl-C) and reported at SWEEP_DEADLINE
#
# BUDGET=SECONDS [540]: the whole call; each part is also capped (tests 180 s, bench 200 s, profile 90 s),
# so that a part that hangs costs its cap, not the machine. PYTHON: the interpreter [python3].
# WHEELS=DIR: wheels to install first (into a temporary folder put on PYTHONPATH), for a machine with no
# package index: `bash bench/gpu-wheels.sh DIR` downloads the sweep stack's.
# DEVICE=cpu: a rehearsal: the CPU stands in for CUDA (no nvidia-smi needed; every import, test
# collection, command, JSON file and picture of the device run is made). `bash bench/rehearse-gpu.sh`
# runs it in an environment holding only what the GPU machine's image has.
set -u
started=$SECONDS
out=${1:?usage: bash bench/gpu.sh OUT_DIR [tests,bench,profile,sweep]}
parts=",${2:-tests,bench,profile,sweep},"
for part in ${parts//,/ }; do
    case $part in tests|bench|profile|sweep) ;; *) echo "bench/gpu.sh: unknown part '$part'" >&2; exit 2 ;; esac
done
device=${DEVICE:-cuda}
case $device in cuda|cpu) ;; *) echo "bench/gpu.sh: DEVICE must be cuda or cpu, not '$device'" >&2; exit 2 ;; esac
budget=${BUDGET:-540}
[[ $budget =~ ^[0-9]+$ ]] || { echo "bench/gpu.sh: BUDGET must be a whole number of seconds, not '$budget'" >&2; exit 2; }
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2  # absolute: the parts run from the checkout's root
if [[ -n ${WHEELS:-} ]]; then
    wheels=$(cd "$WHEELS" 2> /dev/null && pwd) || { echo "bench/gpu.sh: WHEELS: no folder $WHEELS" >&2; exit 2; }
fi
cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0
if [[ $device == cuda ]]; then
    nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || { echo "bench/gpu.sh: nvidia-smi failed: no GPU here?" >&2; exit 2; }
else
    { echo "rehearsal on the CPU: $(grep -m1 'model name' /proc/cpuinfo 2> /dev/null | cut -d: -f2- | sed 's/^ //')"
      nproc; } > "$out/nvidia-smi.txt"
fi
if [[ -n ${WHEELS:-} ]]; then
    site=$(mktemp -d)
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl \
        || { echo "bench/gpu.sh: cannot install the wheels in $WHEELS" >&2; exit 2; }
    export PYTHONPATH=$PYTHONPATH:$site
fi
capped() {  # capped SECONDS COMMAND...: the command, ended (TERM, then KILL 20 s later) past SECONDS
    timeout --kill-after=20 "$@"
}
if [[ $parts == *,tests,* ]]; then
    capped 180 "$py" -m pytest -m gpu -p no:cacheprovider tests > "$out/gpu-tests.txt" 2>&1 || status=1
    tail -n 1 "$out/gpu-tests.txt"
fi
if [[ $parts == *,bench,* ]]; then
    # shellcheck disable=SC2086 # BENCH_ARGS: options, split on spaces
    capped 200 "$py" -m thinker bench --device "$device" \
        --variants "${BENCH_VARIANTS:-eager,tf32,bf16,fused,graph,matmul}" ${BENCH_ARGS:-} \
        --json "$out/bench-cuda.json" > "$out/bench-cuda.txt" 2>&1 || status=1
    tail -n 30 "$out/bench-cuda.txt" | head -n 25
fi
if [[ $parts == *,profile,* ]]; then
    mkdir -p "$out/profile-4096"
    # shellcheck disable=SC2086
    # eager and the other attention kernel: matmul on CUDA, sdpa on a CPU (whose eager step is matmul)
    variants=${PROFILE_VARIANTS:-eager,$([[ $device == cuda ]] && echo matmul || echo sdpa)}
    if capped 90 "$py" -m thinker bench --device "$device" --variants "$variants" ${BENCH_ARGS:-} \
        --batch-size "${PROFILE_BATCH:-4096}" --batch-sizes none --profile "$out/profile-4096" \
        --json "$out/profile-4096/bench.json" > /dev/null 2> "$out/profile-4096/bench.err"; then
        rm -f "$out/profile-4096/bench.err"
        head -n 14 "$out"/profile-4096/trace-*.txt
    else
        status=1
        tail -n 3 "$out/profile-4096/bench.err"
    fi
fi
if [[ $parts == *,sweep,* ]]; then
    left=$((budget - (SECONDS - started) - 30))  # 30 s kept for stopping the sweep and the table
    deadline=${SWEEP_DEADLINE:-$left}
    timeout_s=${SWEEP_TIMEOUT:-$((deadline * 3 / 4))}
    if ! "$py" -c "import optuna, mlflow" 2> /dev/null; then
        echo "bench/gpu.sh: optuna or mlflow missing: no sweep figures (WHEELS=DIR, see bench/gpu-wheels.sh)" \
            | tee "$out/sweep-default-cuda.txt"
        status=1
    elif ((deadline < 60)); then
        echo "bench/gpu.sh: ${deadline}s left of BUDGET=$budget: no sweep (raise BUDGET, or run PARTS=sweep alone)" \
            | tee "$out/sweep-default-cuda.txt"
    else
        # the sweep's own stop at the deadline has 60 s; the cap ends it if that fails too
        capped $((deadline + 90)) "$py" -m thinker.bench.sweep --parts default --device "${device/cuda/auto}" \
            --json "$out/sweep-default-cuda.json" --timeout "$timeout_s" --deadline "$deadline" \
            > "$out/sweep-default-cuda.txt" 2>&1 || status=1
        tail -n 12 "$out/sweep-default-cuda.txt"
    fi
fi
echo
"$py" -m thinker.bench.targets "$out" || status=1
echo "bench/gpu.sh: $((SECONDS - started)) s, files in $out"
exit $status
