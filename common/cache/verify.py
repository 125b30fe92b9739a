"""``proteus cache verify``: completeness and integrity, naming every damaged part.

Quick checks read only metadata: the manifest against its seal digest, the tables against the
manifest and against the views its policy and seed give, every shard's marker and file. The
full check also reads every target chunk (each carries a crc32c) and looks for NaN/inf.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr

from proteus.common.cache.layout import (
    open_root,
    open_tensorstore,
    progress_path,
    read_image_table,
    read_manifest,
    read_view_table,
    seal_path,
    shard_bounds,
    shard_key,
)
from proteus.common.cache.manifest import SEALED, Manifest
from proteus.common.cache.mirror import CacheMirror, DamagedShard, shard_stored
from proteus.common.data.table import STATUS_SKIPPED, ImageTable
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.records import AugPolicy, ViewTable, layout_views


def verify_cache(
    path: Path,
    *,
    read_targets: bool = True,
    on_shard: Callable[[], None] | None = None,
    mirror: CacheMirror | None = None,
) -> list[str]:
    """Every problem found, as one sentence each; an empty list means the cache is sound.
    With ``mirror``, ``path`` is its local copy: shards are listed on the store and fetched
    (each checked on arrival) one at a time."""
    path = Path(path)
    try:
        m = read_manifest(path)
    except ProteusError as exc:
        return [str(exc)]
    problems = check_seal(path, m)
    root = open_root(path)
    try:
        images, views = read_image_table(root), read_view_table(root)
    except (KeyError, ValueError, OSError, zarr.errors.BaseZarrError) as exc:
        return [*problems, f"images/ or views/ table unreadable ({exc})"]
    problems += _check_tables(m, images, views)
    for name, spec in m.arrays.items():
        shape = tuple(spec["shape"])
        problems += _check_target(path, root, m, name, shape, spec["dtype"], mirror)
    missing = [s for s in range(m.num_shards) if not progress_path(path, s).is_file()]
    if missing:
        problems.append(f"progress: {len(missing)} shard(s) never finished (first: {missing[0]})")
    if read_targets and not problems:
        problems += _read_all(path, m, on_shard, mirror)
    return problems


def check_seal(path: Path, m: Manifest) -> list[str]:
    if m.state != SEALED:
        return [f"manifest: state {m.state!r}, not sealed; the extraction is unfinished"]
    try:
        recorded = json.loads(seal_path(path).read_text())["manifest_sha256"]
    except (OSError, ValueError, KeyError):
        return [f"{seal_path(path)}: missing or unreadable seal record"]
    if recorded != m.digest():
        return ["manifest: changed after sealing (its digest differs from progress/seal.json)"]
    return []


def _check_tables(m: Manifest, images: ImageTable, views: ViewTable) -> list[str]:
    problems = []
    n_images, n_views = m.counts.get("images"), m.counts.get("views")
    for name, column in images.columns().items():
        if len(column) != n_images:
            problems.append(f"images/{name}: {len(column)} rows, manifest says {n_images}")
    for name, column in views.columns().items():
        if len(column) != n_views:
            problems.append(f"views/{name}: {len(column)} rows, manifest says {n_views}")
    if problems:
        return problems
    # The view records are a pure function of policy, seed and image sizes: re-derive them.
    sampled = np.flatnonzero(images.status != STATUS_SKIPPED)
    sizes = np.stack([images.height, images.width], 1)[sampled]
    expected = layout_views(
        AugPolicy.from_dict(m.policy), m.seed, sampled, sizes, m.view_segments, m.image_size
    )
    for name, column in expected.columns().items():
        stored = getattr(views, name)
        if stored.shape != column.shape or not np.array_equal(stored, column):
            bad = _first_difference(stored, column)
            problems.append(f"views/{name}: differs from the recorded policy and seed (row {bad})")
    return problems


def _check_target(
    path: Path,
    root,
    m: Manifest,
    name: str,
    shape: tuple[int, ...],
    dtype: str,
    mirror: CacheMirror | None,
) -> list[str]:
    try:
        arr = root["targets"][name]
    except KeyError:
        return [f"targets/{name}: missing"]
    want = (m.counts["views"], *shape)
    if arr.shape != want or arr.dtype != np.dtype(dtype):
        return [f"targets/{name}: shape {arr.shape} {arr.dtype}, manifest says {want} {dtype}"]
    problems = []
    for shard in range(m.num_shards):
        if not shard_stored(path, mirror, name, shard, len(want)):
            problems.append(f"targets/{name} shard {shard}: file missing")
    return problems


def _read_all(path: Path, m: Manifest, on_shard, mirror: CacheMirror | None) -> list[str]:
    problems = []
    for name in m.arrays:
        arr = open_tensorstore(path, name)
        ndim = 1 + len(m.arrays[name]["shape"])
        for shard in range(m.num_shards):
            start, stop = shard_bounds(m, shard)
            if mirror is not None:
                try:
                    mirror.ensure(shard_key(name, shard, ndim))
                except DamagedShard as exc:  # fails a check on arrival: name it, go on
                    problems.append(f"targets/{name} shard {shard}: {exc.why} (on arrival)")
                    continue
            try:
                data = arr[start:stop].read().result()
            except (ValueError, RuntimeError) as exc:
                problems.append(f"targets/{name} shard {shard}: unreadable ({_first_line(exc)})")
                continue
            if not np.isfinite(data).all():
                problems.append(f"targets/{name} shard {shard}: contains NaN or inf")
            if on_shard:
                on_shard()
    return problems


def _first_difference(a: np.ndarray, b: np.ndarray) -> int | str:
    if a.shape != b.shape:
        return f"count {len(a)} vs {len(b)}"
    rows = np.flatnonzero((a != b).reshape(len(a), -1).any(1))
    return int(rows[0]) if len(rows) else 0


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
