#!/usr/bin/env bash
# The wheels gpu_proof.py needs on a GPU machine that has Python 3.12 and PyTorch but no
# package index (the device tool's machines): proteus's own dependencies that image lacks,
# at the versions constraints.txt pins. Writes them to .whl/ (ignored by git); about 15 MB.
# NVIDIA DALI is not among them: its wheel is hundreds of MB, over what the device tool
# carries, so there the proof skips what renders views and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
pins=()
for name in zarr numcodecs donfig google-crc32c timm open_clip_torch ftfy wcwidth; do
    pins+=("$(grep -i "^${name}==" constraints.txt)")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${pins[@]}"
ls .whl
