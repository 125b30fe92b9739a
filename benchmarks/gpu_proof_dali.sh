#!/usr/bin/env bash
# NVIDIA DALI for a device-tool GPU machine (Python 3.12, PyTorch, no package index): the
# wheel (~200 MB) and its dependencies, downloaded here at constraints.txt's pins, packed
# into one .tar and cut into parts of under 60 MB (benchmarks/wheel_parts.py), so that each
# device run carries one part and the machine, kept warm, joins and installs them; then
# gpu_proof.py's renderer and extract sections run. Prints the device commands, in order.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.dali/wheels
rm -rf .dali
mkdir -p "$out"
pin=$(grep -i '^nvidia-dali-cuda130==' constraints.txt)
python3 -m pip download --quiet --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -c constraints.txt \
    -d "$out" "$pin"
# What the device image has already (with PyTorch): kept out, so its versions stay.
rm -f "$out"/numpy-* "$out"/packaging-* "$out"/six-* "$out"/typing_extensions-* \
    "$out"/pyyaml-* "$out"/PyYAML-* "$out"/wheel-*
tar -cf .dali/dali.tar -C "$out" .
python3 benchmarks/wheel_parts.py split .dali/dali.tar --out .dali/parts
