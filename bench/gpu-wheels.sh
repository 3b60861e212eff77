#!/usr/bin/env bash
# Download the sweep stack's wheels for a GPU machine with no package index (bench/gpu-wheels.txt says
# which and why), for Python 3.12 on x86-64 Linux whatever this machine runs:
#
#     bash bench/gpu-wheels.sh DIR            # then, there: WHEELS=DIR bash bench/gpu.sh OUT
#
# PYTHON_VERSION (default 3.12) picks another Python for the compiled wheels.
set -euo pipefail
dir=${1:?usage: bash bench/gpu-wheels.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
mkdir -p "$dir"
"${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: --python-version "${PYTHON_VERSION:-3.12}" \
    --implementation cp "${platforms[@]}" -d "$dir" -r "$here/gpu-wheels.txt"
echo "$(ls "$dir"/*.whl | wc -l) wheels, $(du -sh "$dir" | cut -f1), in $dir"
