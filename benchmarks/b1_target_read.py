"""B1 target read: views/s of the trainer's read path vs numpy memmap of the same bytes.

Random batches of 128 views, fp16, shapes 257×384 (DINOv2-S/14 at 224 px) and 257×1536
(DINOv2-g/14). Goal: the trainer's path ≥ 0.6 × memmap. Page cache warm for every reader
(the question is decoding and copying overhead, not the disk).

    python benchmarks/b1_target_read.py [--views 1024] [--batches 30] [--dir /tmp/b1]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from _common import synthetic_targets, table, timed

from proteus.common.cache.layout import open_tensorstore
from proteus.common.cache.shards import ShardedTargets


def run(folder: Path, views: int, per_view: tuple[int, ...], batches: int, batch: int = 128):
    baseline = synthetic_targets(folder, views, per_view)
    rng = np.random.default_rng(1)
    plan = [rng.choice(views, batch, replace=False) for _ in range(batches)]

    def loop(read):
        return lambda: [read(ids) for ids in plan]

    import zarr

    store = open_tensorstore(folder, "patch")
    zarr_arr = zarr.open_array(str(folder / "targets" / "patch"), mode="r")
    shards = ShardedTargets(folder, "patch", views, per_view, "float16", 256)
    fast = ShardedTargets(folder, "patch", views, per_view, "float16", 256, verify=False)

    def ts_read(ids):
        unique, inverse = np.unique(ids, return_inverse=True)
        return np.asarray(store[unique].read().result())[inverse]

    def first_touch(ids):
        # A fresh reader for every batch: each chunk's crc32c is computed (the first epoch).
        return ShardedTargets(folder, "patch", views, per_view, "float16", 256).read(ids)

    readers = {
        "memmap (baseline)": lambda ids: np.asarray(baseline[ids]),
        "proteus shards (train default; crc32c checked once)": shards.read,
        "proteus shards, first touch (crc32c every read)": first_touch,
        "proteus shards, crc32c off": fast.read,
        "tensorstore": ts_read,
    }
    # Sanity: all return the same bytes before anything is timed.
    reference = readers["memmap (baseline)"](plan[0]).tobytes()
    assert all(read(plan[0]).tobytes() == reference for read in readers.values())
    rows = []
    for name, read in readers.items():
        seconds = timed(loop(read), repeats=3)
        rows.append({"reader": name, "views/s": batches * batch / seconds})
    slow = plan[:2]  # zarr-python is ~100x slower: two batches are enough to rank it
    seconds = timed(lambda: [zarr_arr.oindex[np.sort(ids)] for ids in slow], repeats=1)
    rows.append({"reader": "zarr-python", "views/s": len(slow) * batch / seconds})
    base = rows[0]["views/s"]
    for row in rows:
        row["ratio vs memmap"] = row["views/s"] / base
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="proteus-b1-"))
    try:
        for dim in (384, 1536):
            shape = (257, dim)
            print(
                f"\nB1  {args.views} views of 257×{dim} fp16 "
                f"({257 * dim * 2 / 1e6:.2f} MB/view), random batches of 128"
            )
            rows = run(root / f"d{dim}", args.views, shape, args.batches)
            print(table(rows, ["reader", "views/s", "ratio vs memmap"]))
            shutil.rmtree(root / f"d{dim}")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
