"""Shared helpers for the benchmarks: timing, synthetic caches in the real layout, tables.

Absolute numbers on shared machines are noise; every benchmark prints ratios against a
baseline measured in the same run, on the same data, right before or after.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def timed(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median seconds per call (the median resists the other tenants of a shared box)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def synthetic_targets(
    folder: Path, views: int, per_view: tuple[int, ...], dtype: str = "float16",
    shard_views: int = 256, seed: int = 0,
) -> np.ndarray:  # fmt: skip
    """A target array written exactly as extraction writes one (whole sharded chunks with
    crc32c), plus the same bytes as a contiguous .npy for the memmap baseline."""
    import zarr

    from proteus.common.cache.layout import create_target

    rng = np.random.default_rng(seed)
    root = zarr.open_group(str(folder), mode="w", zarr_format=3)
    arr = create_target(root, "patch", views, per_view, dtype, shard_views)
    whole = np.lib.format.open_memmap(folder / "baseline.npy", mode="w+", dtype=dtype,
                                      shape=(views, *per_view))  # fmt: skip
    for start in range(0, views, shard_views):
        stop = min(start + shard_views, views)
        block = rng.standard_normal((stop - start, *per_view), dtype=np.float32).astype(dtype)
        arr[start:stop] = block
        whole[start:stop] = block
    whole.flush()
    return np.load(folder / "baseline.npy", mmap_mode="r")


def table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines.append("  ".join("-" * widths[c] for c in columns))
    lines += ["  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return "" if value is None else str(value)


def synthetic_cache(
    folder: Path, views: int, per_view: dict[str, tuple[int, ...]], dtype: str = "float16",
    shard_views: int = 256, seed: int = 0,
):  # fmt: skip
    """A sealed cache of random targets written by the real CacheWriter (one view per
    "image"), for benchmarks that need the whole reader but no teacher."""
    from proteus import __version__
    from proteus.common.cache.codec import TargetCodec
    from proteus.common.cache.layout import ImageTable
    from proteus.common.cache.manifest import CREATING, FORMAT_VERSION, Manifest
    from proteus.common.cache.reader import Cache
    from proteus.common.views import AugPolicy, sample_views
    from proteus.extract.writer import CacheWriter

    codecs = {name: TargetCodec(name, tuple(shape), dtype) for name, shape in per_view.items()}
    images = ImageTable(
        path=np.array([f"{i:07d}.jpg" for i in range(views)]),
        label=np.zeros(views, np.int64), height=np.full(views, 256, np.int32),
        width=np.full(views, 256, np.int32), transcode=np.zeros(views, bool),
        status=np.zeros(views, np.uint8),
    )  # fmt: skip
    table = sample_views(AugPolicy(), seed, np.arange(views), np.full((views, 2), 256), 1, 224)
    manifest = Manifest(
        format_version=FORMAT_VERSION, state=CREATING, proteus_version=__version__,
        teacher="synthetic", teacher_family="dinov2", weights_source="random",
        weights_sha256="0" * 64, embed_dim=per_view["cls"][-1], patch_size=14, grid=(16, 16),
        layers=(), image_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        renderer={"name": "dali"}, policy=AugPolicy().to_dict(), seed=seed, views_per_image=1,
        precision="float32", targets={n: list(s) for n, s in per_view.items()}, dtype=dtype,
        codec="", shard_views=shard_views,
        dataset={"kind": "flat", "root": str(folder), "fingerprint": "", "classes": []},
        counts={"images": views, "views": views},
        encoding={n: c.to_manifest() for n, c in codecs.items()},
        arrays={a: {"shape": list(s), "dtype": d} for c in codecs.values()
                for a, (s, d) in c.arrays().items()},
    )  # fmt: skip
    writer = CacheWriter.create(folder, manifest, images, table)
    rng = np.random.default_rng(seed)
    for shard in range(manifest.num_shards):
        rows = min(shard_views, views - shard * shard_views)
        arrays = {}
        for codec in codecs.values():
            values = rng.standard_normal((rows, *codec.shape), dtype=np.float32)
            arrays |= {k: v.numpy() for k, v in codec.encode(_torch(values)).items()}
        writer.write_shard(shard, arrays, [])
    writer.seal()
    return Cache(folder)


def _torch(array: np.ndarray):
    import torch

    return torch.from_numpy(array)
