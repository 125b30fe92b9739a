"""The trainer's hot read path: target chunks gathered straight out of memory-mapped shards.

A target array is a standard Zarr v3 ``sharding_indexed`` array (docs/CACHE_FORMAT.md): each
shard file holds its views' chunks (raw little-endian bytes + a 4-byte crc32c) followed by an
index of (offset, nbytes) pairs with its own crc32c. Reading a view is therefore one slice of a
memory map. This reader parses each shard's index once, then copies chunk bytes into the
output, checking every chunk's crc32c (google-crc32c, the library zarr itself uses), so it
returns exactly what zarr-python decodes, at close to the speed of a plain memmap
(docs/PERFORMANCE.md, B1).

Each chunk's crc32c is checked the first time this process reads it (google-crc32c runs at
~1.5 GB/s here, slower than a memory copy); later reads of a verified chunk are a plain copy.
Training reads every view once per K epochs, so after the first pass over the data the check
costs nothing, yet no byte is used without having been checked once.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import google_crc32c
import numpy as np

from proteus.common.cache.layout import shard_file
from proteus.common.runtime.errors import ProteusError

_MISSING = np.uint64(2**64 - 1)  # zarr's marker of an absent chunk in a shard index
_PIECE = 64 * 1024


def shard_index(data, shard_views: int) -> np.ndarray | str:
    """A shard file's (offset, nbytes) index after its crc32c check, or why it is unusable."""
    index_bytes = shard_views * 16
    if len(data) < index_bytes + 4:
        return "file shorter than its index"
    raw = data[len(data) - index_bytes - 4 : len(data) - 4]
    if google_crc32c.value(bytes(raw)) != int.from_bytes(data[len(data) - 4 :], "little"):
        return "its index fails its crc32c"
    return np.frombuffer(raw, dtype="<u8").reshape(shard_views, 2)


def shard_problem(data, shard_views: int, rows: int, chunk_bytes: int) -> str | None:
    """Why a whole shard file's bytes are not sound (index, the first ``rows`` chunks
    present, of the right size and passing their crc32c), or None: the check of a shard that
    arrives from an object store, before it is used."""
    index = shard_index(data, shard_views)
    if isinstance(index, str):
        return index
    with memoryview(data) as view:  # released on return: an mmap can then be closed
        for row in range(rows):
            offset, nbytes = index[row]
            if offset == _MISSING or nbytes != chunk_bytes + 4 or offset + nbytes > len(data):
                return f"chunk {row} absent or of the wrong size"
            start, end = int(offset), int(offset) + chunk_bytes
            if google_crc32c.value(bytes(view[start:end])) != int.from_bytes(
                view[end : end + 4], "little"
            ):
                return f"chunk {row} fails its crc32c"
    return None


class ShardedTargets:
    """Random access to one target array's views."""

    def __init__(
        self,
        cache: Path,
        name: str,
        views: int,
        per_view: tuple[int, ...],
        dtype: str,
        shard_views: int,
        verify: bool = True,
        locate: Callable[[int], Path] | None = None,
        max_open: int | None = None,
    ):
        self.cache, self.name = Path(cache), name
        self.views, self.per_view = views, tuple(per_view)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.shard_views = shard_views
        self.verify = verify
        self.chunk_bytes = int(np.prod(self.per_view)) * self.dtype.itemsize
        self._maps: dict[int, tuple[mmap.mmap, np.ndarray]] = {}  # shard -> (file, index)
        self._verified = np.zeros(views, dtype=bool)  # chunks whose crc32c passed already
        self._lock = threading.Lock()
        # At most this many shards stay mapped (None: all): a shard cache evicts files, and
        # an evicted file's disk space returns only once nobody maps it.
        self.max_open = max_open
        # Where shard n's file is: in the cache folder, or (a remote cache) fetched into the
        # node's shard cache on first touch.
        self.locate = locate or (lambda shard: shard_file(self.cache, name, shard, self.ndim))

    @property
    def ndim(self) -> int:
        return 1 + len(self.per_view)

    def read(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.views):
            raise IndexError(f"view ids outside 0..{self.views - 1}")
        out = np.empty((len(ids), *self.per_view), dtype=self.dtype)
        flat = out.reshape(len(ids), int(np.prod(self.per_view))).view(np.uint8)
        shards, rows = np.divmod(ids, self.shard_views)
        for k, (view, shard, row) in enumerate(
            zip(ids.tolist(), shards.tolist(), rows.tolist(), strict=True)
        ):
            data, index = self._shard(shard)
            offset, nbytes = index[row]
            if offset == _MISSING or nbytes != self.chunk_bytes + 4:
                self._damaged(shard, f"chunk {row} absent or of the wrong size")
            start = int(offset)
            if self.verify and not self._verified[view]:
                end = start + self.chunk_bytes
                if self._copy_checked(data, start, flat[k]) != int.from_bytes(
                    data[end : end + 4], "little"
                ):
                    self._damaged(shard, f"chunk {row} fails its crc32c")
                self._verified[view] = True
            else:
                flat[k] = np.frombuffer(data, np.uint8, self.chunk_bytes, start)
        return out

    @staticmethod
    def _copy_checked(data: mmap.mmap, start: int, out: np.ndarray) -> int:
        """Copy a chunk into ``out`` and return its crc32c. google-crc32c takes ``bytes``
        only, so the chunk passes through in 64 KiB pieces: small enough for malloc to reuse
        one block, where whole-chunk copies (≥ 128 KiB) leave freed buffers behind."""
        crc = 0
        for pos in range(0, len(out), _PIECE):
            piece = data[start + pos : start + min(pos + _PIECE, len(out))]
            crc = google_crc32c.extend(crc, piece)
            out[pos : pos + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
        return crc

    def _shard(self, shard: int) -> tuple[mmap.mmap, np.ndarray]:
        entry = self._maps.get(shard)
        if entry is None:
            with self._lock:
                entry = self._maps.get(shard) or self._open(shard)
                self._maps[shard] = entry
                if self.max_open is not None and len(self._maps) > self.max_open:
                    # Dropped, not closed: a reader thread may still copy out of it.
                    del self._maps[next(iter(self._maps))]
        return entry

    def _open(self, shard: int) -> tuple[mmap.mmap, np.ndarray]:
        path = self.locate(shard)
        try:
            with open(path, "rb") as f:
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            if hasattr(mmap, "MADV_RANDOM"):
                # Views are read in random order: kernel read-ahead would only pull in (and
                # map) neighbouring chunks nobody asked for.
                mapped.madvise(mmap.MADV_RANDOM)
        except (OSError, ValueError) as exc:
            self._damaged(shard, f"cannot map {path} ({exc})")
        index = shard_index(mapped, self.shard_views)
        if isinstance(index, str):
            self._damaged(shard, index)
        return mapped, index

    def _damaged(self, shard: int, why: str) -> NoReturn:
        raise ProteusError(
            f"{self.cache}: targets/{self.name} shard {shard} is damaged ({why}); refusing to "
            "train on it — `proteus cache verify` names every damaged shard"
        )
