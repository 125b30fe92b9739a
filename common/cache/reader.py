"""Opening a cache for reading: manifest, tables, and fast random access to targets.

Targets are read by :class:`ShardedTargets` (memory-mapped shards, crc32c checked), which
serves random batches at close to plain-memmap speed; ``reader="tensorstore"`` uses
tensorstore on the same Zarr v3 store instead. zarr-python would be ~50× slower for random
batches (docs/PERFORMANCE.md, B1). All three return the very same bytes (tested).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from proteus.common.cache.alignment import views_digest
from proteus.common.cache.codec import TargetCodec
from proteus.common.cache.layout import (
    load_codec,
    open_root,
    open_tensorstore,
    read_image_table,
    read_manifest,
    read_view_table,
    shard_key,
)
from proteus.common.cache.manifest import SEALED, Manifest
from proteus.common.cache.mirror import CacheMirror, shard_stored
from proteus.common.cache.shards import ShardedTargets
from proteus.common.cache.verify import check_seal
from proteus.common.data.dataset import resolve_root
from proteus.common.data.images import read_encoded
from proteus.common.data.table import STATUS_OK, ImageTable
from proteus.common.runtime.errors import ProteusError
from proteus.common.storage.objectstore import is_url
from proteus.common.storage.shardcache import ShardCacheConfig
from proteus.common.views.records import ViewTable


class Cache:
    """A cache opened read-only: a folder, or an ``s3://``/``gs://``/``file://`` URL read
    through this node's shard cache (``mirror.py``). ``data_root`` overrides where the images
    are now; ``option`` is the command-line option named in error messages."""

    def __init__(
        self,
        location: Path | str,
        *,
        require_sealed: bool = True,
        data_root: Path | str | None = None,
        reader: str = "shards",
        option: str = "--cache",
        shard_cache: ShardCacheConfig | None = None,
    ):
        self.option = option
        self.name = str(location)  # what the user gave: messages name it
        self.mirror: CacheMirror | None = None
        if is_url(location):
            if reader != "shards":
                raise ProteusError(
                    f"{option} {location}: the {reader} reader reads local caches only"
                )
            self.mirror = CacheMirror(
                str(location), option, shard_cache, require_sealed=require_sealed
            )
            self.path = self.mirror.path
        else:
            self.path = Path(location)
            if not self.path.exists():
                raise ProteusError(f"{self.option} {self.path}: no such folder")
        self.manifest: Manifest = read_manifest(self.path)
        if require_sealed and self.manifest.state != SEALED:
            raise ProteusError(
                f"{self.option} {self.name}: not sealed (state {self.manifest.state!r}); its "
                "extraction is unfinished — re-run the same `proteus extract` command to finish it"
            )
        if require_sealed:
            problems = check_seal(self.path, self.manifest)
            if problems:
                raise ProteusError(
                    f"{self.option} {self.name}: {problems[0]}; `proteus cache verify`"
                )
        root = open_root(self.path)
        self.images: ImageTable = read_image_table(root)
        self.views: ViewTable = read_view_table(root)
        # A URL (tar shards on an object store) stands for a local folder they are fetched to.
        self.data_root = resolve_root(data_root or self.manifest.dataset.root, shard_cache)
        if reader not in ("shards", "tensorstore"):
            raise ValueError(f"reader must be shards or tensorstore, not {reader!r}")
        self.reader = reader
        self._arrays: dict[str, object] = {}
        self._codecs: dict[str, TargetCodec] = {}
        self._views_digest: str | None = None

    def close(self) -> None:
        """Stop a remote cache's background fetches (nothing to do for a local one)."""
        if self.mirror is not None:
            self.mirror.close()

    def image_path(self, index: int) -> Path:
        # Absolute entries (from a list file) stay absolute: Path join keeps the right side.
        return self.data_root / str(self.images.path[index])

    def encoded(self, index: int) -> np.ndarray:
        """The bytes the renderer decodes for image ``index`` (transcoded if recorded so)."""
        return read_encoded(self.image_path(index), bool(self.images.transcode[index]))

    def views_digest(self) -> str:
        """What two caches must share to be trained together (``alignment.py``)."""
        if self._views_digest is None:
            self._views_digest = views_digest(self.images, self.views, self.manifest.image_size)
        return self._views_digest

    def usable_views(self) -> np.ndarray:
        """Ids of views whose image rendered; skipped and failed images have no targets."""
        ok = self.images.status[self.views.image] == STATUS_OK
        return np.flatnonzero(ok)

    def arrays_of(self, names) -> list[str]:
        """The stored arrays behind these targets (e.g. patch and patch_scale for int8)."""
        return [a for name in names for a in TargetCodec.of(self.manifest, name).arrays()]

    def check_shards(self, names: tuple[str, ...]) -> None:
        """Every shard file of these targets exists: a missing one would read as zeros."""
        m = self.manifest
        for array in self.arrays_of(names):
            ndim = 1 + len(m.arrays[array]["shape"])
            for shard in range(m.num_shards):
                if not shard_stored(self.path, self.mirror, array, shard, ndim):
                    raise ProteusError(
                        f"{self.option} {self.name}: targets/{array} shard {shard} is missing; the "
                        "cache is damaged (`proteus cache verify` lists everything wrong)"
                    )

    def prefetch(self, names: tuple[str, ...], ids: np.ndarray | None) -> None:
        """A remote cache starts fetching the shards these views live in (a local one has
        them all already)."""
        if self.mirror is None or ids is None or not len(ids):
            return
        m = self.manifest
        shards = np.unique(np.asarray(ids) // m.shard_views).tolist()
        self.mirror.prefetch(
            [
                shard_key(array, shard, 1 + len(m.arrays[array]["shape"]))
                for array in self.arrays_of(names)
                for shard in shards
            ]
        )

    def codec(self, name: str) -> TargetCodec:
        """How target ``name`` is stored, with its fitted state (PCA's basis) loaded."""
        if name not in self.manifest.targets:
            have = ", ".join(self.manifest.targets)
            raise ProteusError(f"{self.name}: no target {name!r} in this cache (it has {have})")
        if name not in self._codecs:
            self._codecs[name] = load_codec(open_root(self.path), self.manifest, name)
        return self._codecs[name]

    def read_stored(self, name: str, ids: np.ndarray) -> dict[str, np.ndarray]:
        """The stored arrays of target ``name`` for views ``ids`` (any order, repeats
        allowed), undecoded: what the trainer moves to its device and decodes there."""
        codec = self.codec(name)
        ids = np.asarray(ids, dtype=np.int64)
        return {array: self._read_array(array, ids) for array in codec.arrays()}

    def read(self, name: str, ids: np.ndarray) -> np.ndarray:
        """Targets of the views ``ids``, decoded to float32 (int8 scaled, PCA reconstructed)."""
        codec = self.codec(name)
        stored = {k: torch.from_numpy(v) for k, v in self.read_stored(name, ids).items()}
        return codec.decode(stored).numpy()

    def _read_array(self, array: str, ids: np.ndarray) -> np.ndarray:
        if self.reader == "shards":
            return self._array(array).read(ids)
        # Sorted unique ids read each shard region once and in file order.
        unique, inverse = np.unique(ids, return_inverse=True)
        try:
            data = self._array(array)[unique].read().result()
        except (ValueError, RuntimeError) as exc:
            # tensorstore reports a crc32c mismatch or a torn shard index here.
            first = str(exc).splitlines()[0][:200]
            raise ProteusError(
                f"{self.option} {self.name}: targets/{array} is damaged ({first}); refusing to "
                "train on it — `proteus cache verify` names every damaged shard"
            ) from exc
        return np.asarray(data)[inverse]

    def _array(self, array: str):
        if array not in self._arrays and self.reader == "shards":
            m = self.manifest
            spec = m.arrays[array]
            self._arrays[array] = ShardedTargets(
                self.path,
                array,
                m.counts["views"],
                tuple(spec["shape"]),
                spec["dtype"],
                m.shard_views,
                **self._remote_shards(array, 1 + len(spec["shape"])),
            )
        if array not in self._arrays:
            self._arrays[array] = open_tensorstore(self.path, array)
        return self._arrays[array]

    def _remote_shards(self, array: str, ndim: int) -> dict:
        """ShardedTargets' arguments for a remote cache: shards come through the mirror, and
        few stay mapped so evicted files free their space."""
        mirror = self.mirror
        if mirror is None:
            return {}
        return {
            "locate": lambda shard: mirror.ensure(shard_key(array, shard, ndim)),
            "max_open": 16,
        }
