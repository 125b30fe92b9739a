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
