#!/usr/bin/env bash
# A rehearsal of the GPU run on this CPU: `bench/gpu.sh` in an environment that holds only what the GPU
# machine's image has that the project uses, plus the wheels carried there, with the CPU standing in
# for CUDA. Every import, test collection, command, JSON file and picture of the device run is made
# here, before a GPU's minutes are spent on it.
#
#     bash bench/rehearse-gpu.sh [OUT_DIR]     # exit 0 when every part ran and wrote its files
#
# 1. pip's resolver, for the image's Python (3.12), checks that the image (bench/gpu-image.txt) and the
#    carried wheels (bench/gpu-wheels.txt) hold every package the project needs there (bench/gpu_image.py);
# 2. a fresh virtual environment with torch (the CPU build) and those of the image's packages, and not
#    the project itself: the device run works from the checkout (PYTHONPATH=.), as there;
# 3. the carried wheels, downloaded for this Python (bench/gpu-wheels.sh);
# 4. DEVICE=cpu bench/gpu.sh with them (WHEELS=...), at small sizes and with the sweep cut at a minute;
# 5. every file the device run writes is there and readable (python -m thinker.bench.targets --require-files).
#
# What it cannot show: CUDA itself (graphs, NVML, the profiler's CUDA events), torch 2.11's API (here
# 2.13.0, the CPU build), Python 3.12 at run time (here this machine's; step 1 resolves for 3.12).
# Needs the package index; PYTHON picks the interpreter [python3]. About 5 minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d)}
mkdir -p "$out" && out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset PYTHONPATH VIRTUAL_ENV
py=${PYTHON:-python3}

"$py" -m venv "$work/venv"
vpy=$work/venv/bin/python
"$vpy" -m pip install -q --disable-pip-version-check --upgrade pip

echo "rehearse: 1/5 the device's packages, resolved for the image's Python"
"$vpy" "$root/bench/gpu_image.py" --from-image "$work/from-image.txt"

echo "rehearse: 2/5 an environment of the image's packages (torch: this machine's CPU build)"
# shellcheck disable=SC2046 # one package name a line
"$vpy" -m pip install -q --disable-pip-version-check torch==2.13.0 $(cat "$work/from-image.txt")

echo "rehearse: 3/5 the carried wheels, for this Python"
version=$("$vpy" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
PYTHON=$vpy PYTHON_VERSION=$version bash "$root/bench/gpu-wheels.sh" "$work/wheels"

echo "rehearse: 4/5 bench/gpu.sh with the CPU standing in for CUDA"
status=0
DEVICE=cpu PYTHON=$vpy WHEELS=$work/wheels BUDGET=${BUDGET:-300} PROFILE_BATCH=256 \
    BENCH_ARGS="--iters 2 --warmup 1 --min-seconds 0 --batch-sizes 64,128" \
    SWEEP_TIMEOUT=${SWEEP_TIMEOUT:-5} SWEEP_DEADLINE=${SWEEP_DEADLINE:-60} \
    bash "$root/bench/gpu.sh" "$out" || status=1

echo "rehearse: 5/5 the files of the device run"
PYTHONPATH=$root "$vpy" -m thinker.bench.targets "$out" --require-files > /dev/null || status=1
if ((status)); then
    echo "rehearse: FAILED: the device run would fail too; its files are in $out" >&2
else
    echo "rehearse: the device run works here; its files are in $out"
fi
exit $status
