"""B1/B2 from an object store: a cache on an S3 server (moto's server mode, on this machine's
loopback) read through the node's shard cache, against the local baselines of B1 (a memmap of
the same bytes) and B2 (the training loop fed from memory), measured in the same run.

- B1 rows: random batches of 128 views; "cold" is a first pass over every view with an
  empty shard cache (each shard fetched, crc32c-checked, then read), with and without the
  trainer's prefetch of the next batches' shards; "warm" is the same pass once the shards
  are local.
- B2 rows: the training step of B2 fed from the remote cache, warm, and cold (every timed
  pass on an empty shard cache, prefetching ahead as the trainer does), each against the
  in-memory loop, their passes interleaved (``_common.target_loop_speed``).

    python benchmarks/b8_object_store.py [--views 2048] [--steps 15] [--batch 32]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import bench_vit, planned_reads, synthetic_cache, table, target_loop_speed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from s3server import S3Server

from proteus.common.cache.reader import Cache
from proteus.common.storage.objectstore import ObjectStore
from proteus.common.storage.shardcache import ShardCacheConfig

BUCKET = "bench"


def upload(folder: Path, url: str) -> float:
    """Put every file of a local cache as one object; returns MB uploaded."""
    store = ObjectStore(url)
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            store.put(path.relative_to(folder).as_posix(), path)
            total += path.stat().st_size
    return total / 1e6


def read_rows(local: Cache, url: str, root: Path, batches: list[np.ndarray]) -> list[dict]:
    everything = np.arange(local.manifest.counts["views"])
    baseline_path = root / "baseline.npy"
    np.save(baseline_path, local.read_stored("patch", everything)["patch"])
    memmap = np.load(baseline_path, mmap_mode="r")
    views = sum(len(b) for b in batches)

    def pass_over(read) -> float:
        start = time.perf_counter()
        for ids in batches:
            read(ids)
        return views / (time.perf_counter() - start)

    def cold(prefetch: bool) -> float:
        speeds = []
        for repeat in range(2):
            where = root / f"cold-{prefetch}-{repeat}"
            cache = Cache(url, shard_cache=ShardCacheConfig(where, 2**40))
            start = time.perf_counter()
            for stored in planned_reads([cache], ("patch",), batches, prefetch):
                del stored
            speeds.append(views / (time.perf_counter() - start))
            if cache.mirror:
                cache.mirror.close()
            shutil.rmtree(where)
        return float(np.median(speeds))

    warm_cache = Cache(url, shard_cache=ShardCacheConfig(root / "warm", 2**40))
    pass_over(lambda ids: warm_cache.read_stored("patch", ids))  # fetch everything once
    rows = {
        "memmap of the same bytes (baseline)": lambda: pass_over(lambda ids: memmap[ids]),
        "local cache, proteus shards": lambda: pass_over(
            lambda ids: local.read_stored("patch", ids)
        ),
        "s3 → shard cache, warm (shards local)": lambda: pass_over(
            lambda ids: warm_cache.read_stored("patch", ids)
        ),
    }
    out = [
        {"reader": name, "views/s": float(np.median([f() for _ in range(3)]))}
        for name, f in rows.items()
    ]
    out.append({"reader": "s3 → shard cache, cold first pass, no prefetch", "views/s": cold(False)})
    out.append(
        {"reader": "s3 → shard cache, cold first pass, prefetch ahead", "views/s": cold(True)}
    )
    base = out[0]["views/s"]
    for row in out:
        row["ratio vs memmap"] = row["views/s"] / base
    return out


def loop_rows(local: Cache, url: str, root: Path, steps: int, batch: int) -> list[dict]:
    warm = Cache(url, shard_cache=ShardCacheConfig(root / "loop-warm", 2**40))
    passes = iter(range(100))

    def cold() -> list[Cache]:
        # Every timed pass starts on its own empty shard cache.
        return [Cache(url, shard_cache=ShardCacheConfig(root / f"cold-{next(passes)}", 2**40))]

    loop = functools.partial(target_loop_speed, student=bench_vit(14), image_size=224)
    rows = loop([local], steps=steps, batch=batch, label="local cache")
    # Each loop runs one warm-up pass first: every shard the plan touches is local after it.
    rows += loop([warm], steps=steps, batch=batch, label="s3, warm shard cache")
    rows += loop([warm], steps=steps, batch=batch, label="s3, cold shard cache", fresh=cold)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=16, help="B1: batches of 128 per pass")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="proteus-b8-"))
    server = S3Server.start()
    try:
        os.environ.update(server.env())
        server.create_bucket(BUCKET)
        shapes = {"cls": (384,), "patch": (256, 384)}
        local = synthetic_cache(root / "cache", views=args.views, per_view=shapes)
        url = f"s3://{BUCKET}/cache"
        start = time.perf_counter()
        mb = upload(root / "cache", url)
        print(
            f"uploaded {mb:.0f} MB to the loopback S3 server in {time.perf_counter() - start:.1f} s"
        )
        rng = np.random.default_rng(1)
        batches = [rng.choice(args.views, 128, replace=False) for _ in range(args.batches)]
        print(
            f"\nB1  {args.batches} random batches of 128 views of 257×384 fp16 "
            f"({args.views} views in {local.manifest.num_shards} shards of 256)"
        )
        print(table(read_rows(local, url, root, batches), ["reader", "views/s", "ratio vs memmap"]))
        print(f"\nB2  training loop, batch {args.batch}, {args.steps} steps, 224 px")
        print(
            table(loop_rows(local, url, root, args.steps, args.batch), ["loop", "steps/s", "ratio"])
        )
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
