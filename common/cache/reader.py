"""Opening a cache for reading: manifest, tables, and fast random access to targets.

Targets are read by :class:`ShardedTargets` (memory-mapped shards, crc32c checked), which
serves random batches at close to plain-memmap speed; ``reader="tensorstore"`` uses
tensorstore on the same Zarr v3 store instead. zarr-python would be ~50× slower for random
batches (docs/PERFORMANCE.md, B1). All three return the very same bytes (tested).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from proteus.common.cache.layout import (
    STATUS_OK,
    ImageTable,
    open_root,
    read_image_table,
    read_manifest,
    read_view_table,
    shard_file,
)
from proteus.common.cache.manifest import SEALED, Manifest
from proteus.common.cache.shards import ShardedTargets
from proteus.common.errors import ProteusError
from proteus.common.views import ViewTable


class Cache:
    """A cache opened read-only. ``data_root`` overrides where the images are now."""

    def __init__(
        self,
        path: Path,
        *,
        require_sealed: bool = True,
        data_root: Path | None = None,
        reader: str = "shards",
    ):
        self.path = Path(path)
        if not self.path.exists():
            raise ProteusError(f"--cache {self.path}: no such folder")
        self.manifest: Manifest = read_manifest(self.path)
        if require_sealed and self.manifest.state != SEALED:
            raise ProteusError(
                f"--cache {self.path}: not sealed (state {self.manifest.state!r}); its "
                "extraction is unfinished — re-run the same `proteus extract` command to finish it"
            )
        if require_sealed:
            from proteus.common.cache.verify import check_seal

            problems = check_seal(self.path, self.manifest)
            if problems:
                raise ProteusError(f"--cache {self.path}: {problems[0]}; `proteus cache verify`")
        root = open_root(self.path)
        self.images: ImageTable = read_image_table(root)
        self.views: ViewTable = read_view_table(root)
        self.data_root = Path(data_root or self.manifest.dataset["root"])
        if reader not in ("shards", "tensorstore"):
            raise ValueError(f"reader must be shards or tensorstore, not {reader!r}")
        self.reader = reader
        self._arrays: dict[str, object] = {}

    def image_path(self, index: int) -> Path:
        # Absolute entries (from a list file) stay absolute: Path join keeps the right side.
        return self.data_root / str(self.images.path[index])

    def usable_views(self) -> np.ndarray:
        """Ids of views whose image rendered; skipped and failed images have no targets."""
        ok = self.images.status[self.views.image] == STATUS_OK
        return np.flatnonzero(ok)

    def check_shards(self, names: tuple[str, ...]) -> None:
        """Every shard file of these targets exists: a missing one would read as zeros."""
        m = self.manifest
        for name in names:
            ndim = 1 + len(m.targets[name])
            for shard in range(m.num_shards):
                if not shard_file(self.path, name, shard, ndim).is_file():
                    raise ProteusError(
                        f"--cache {self.path}: targets/{name} shard {shard} is missing; the cache "
                        "is damaged (`proteus cache verify` lists everything wrong)"
                    )

    def read(self, name: str, ids: np.ndarray) -> np.ndarray:
        """Targets of the views ``ids`` (any order, repeats allowed), as stored (e.g. fp16)."""
        if name not in self.manifest.targets:
            have = ", ".join(self.manifest.targets)
            raise ProteusError(f"{self.path}: no target {name!r} in this cache (it has {have})")
        ids = np.asarray(ids, dtype=np.int64)
        if self.reader == "shards":
            return self._array(name).read(ids)
        # Sorted unique ids read each shard region once and in file order.
        unique, inverse = np.unique(ids, return_inverse=True)
        try:
            data = self._array(name)[unique].read().result()
        except (ValueError, RuntimeError) as exc:
            # tensorstore reports a crc32c mismatch or a torn shard index here.
            first = str(exc).splitlines()[0][:200]
            raise ProteusError(
                f"--cache {self.path}: targets/{name} is damaged ({first}); refusing to train "
                "on it — `proteus cache verify` names every damaged shard"
            ) from exc
        return np.asarray(data)[inverse]

    def _array(self, name: str):
        if name not in self._arrays and self.reader == "shards":
            m = self.manifest
            self._arrays[name] = ShardedTargets(
                self.path, name, m.counts["views"], tuple(m.targets[name]), m.dtype,
                m.shard_views,
            )  # fmt: skip
        if name not in self._arrays:
            import tensorstore as ts

            spec = {
                "driver": "zarr3",
                "kvstore": {"driver": "file", "path": str(self.path / "targets" / name)},
            }
            self._arrays[name] = ts.open(spec, read=True, open=True).result()
        return self._arrays[name]
