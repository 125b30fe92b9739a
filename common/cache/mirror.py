"""A cache on an object store, read through the node's shard cache (``storage/shardcache.py``).

Opening one lists the objects once and copies the metadata (manifest, tables, codec state:
small; not the per-shard markers) into the shard cache's folder for its URL, which then is an
ordinary cache folder to every reader. Target shard files follow on first touch,
whole, each checked (its index and every chunk's crc32c) before it is renamed into place, so
nothing unchecked is ever read. Every fetch first re-reads the remote seal record, so a cache
replaced under a running trainer stops it instead of mixing two caches' targets, and
``prefetch`` fetches in the background what the sampler will ask for next.
"""

from __future__ import annotations

import functools
import mmap
import os
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from proteus.common.cache.layout import (
    ROOT_KEY,
    SEAL_KEY,
    is_marker,
    is_shard_stats,
    is_target_shard,
    read_manifest,
    shard_bounds,
    shard_file,
    shard_key,
    target_shard,
)
from proteus.common.cache.shards import shard_problem
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.files import atomic_write_bytes
from proteus.common.storage.objectstore import ObjectStore
from proteus.common.storage.shardcache import (
    DamagedFile,
    ShardCacheConfig,
    flock,
    make_folder,
    partial_name,
)


class DamagedShard(DamagedFile):
    """A fetched target shard that fails its checks (verify lists these and goes on)."""


def is_metadata(key: str) -> bool:
    """What readers and writers need locally: all but target shards and per-shard progress.
    Markers and statistics are one object per shard (tens of thousands at ImageNet scale):
    only verify and sealing read them, and they fetch them themselves."""
    return not is_target_shard(key) and not is_shard_stats(key) and not is_marker(key)


def shard_stored(cache: Path, mirror: CacheMirror | None, name: str, shard: int, ndim: int) -> bool:
    """Whether target ``name``'s shard exists: on the store (listed at open) for a remote
    cache, as a file in the folder for a local one."""
    if mirror is not None:
        return mirror.has(shard_key(name, shard, ndim))
    return shard_file(cache, name, shard, ndim).is_file()


class CacheMirror:
    """The node-local copy of the cache at ``url``; ``path`` is a cache folder."""

    def __init__(
        self,
        url: str,
        option: str = "--cache",
        config: ShardCacheConfig | None = None,
        *,
        require_sealed: bool = True,
        fresh: bool = False,
    ):
        self.url, self.option = url.rstrip("/"), option
        self.config = config or ShardCacheConfig.from_env()
        self.store = ObjectStore(self.url, option)
        self.path = self.config.folder(self.url)
        self.listing = self.store.list()
        if ROOT_KEY not in self.listing:
            what = "nothing" if not self.listing else "objects, but no zarr.json"
            raise ProteusError(f"{option} {self.url}: not a proteus cache ({what} there)")
        self.seal = self.store.get(SEAL_KEY)
        if require_sealed and self.seal is None:
            raise ProteusError(
                f"{option} {self.url}: not sealed (no {SEAL_KEY}); its extraction is "
                "unfinished — re-run the same `proteus extract` command to finish it"
            )
        self._copy_metadata(fresh)
        self.manifest = read_manifest(self.path)
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[str, Future] = {}
        # Reentrant: a future already done runs its callback (_forget) in the submitting thread.
        self._pending_lock = threading.RLock()

    def __repr__(self) -> str:
        return f"CacheMirror({self.url!r} at {self.path})"

    def has(self, key: str) -> bool:
        return key in self.listing

    def ensure(self, key: str) -> Path:
        """The local file of target shard ``key``, fetched and checked if not here yet."""
        if key not in self.listing:
            raise ProteusError(
                f"{self.option} {self.url}: {key} is missing; the cache is damaged "
                "(`proteus cache verify` lists everything wrong)"
            )
        try:
            return self.config.fetch(
                self.store,
                key,
                self.listing[key],
                self.path / key,
                check=lambda tmp: self._problem(key, tmp),
                before=self._check_unchanged,
            )
        except DamagedFile as exc:
            raise DamagedShard(
                f"{self.option} {self.url}: {self._shard_name(key)} is damaged ({exc.why}, "
                "checked on arrival); refusing to use it — `proteus cache verify` names every "
                "damaged shard",
                exc.why,
            ) from None

    def prefetch(self, keys: list[str]) -> None:
        """Fetch these shards in the background (errors surface when they are read)."""
        with self._pending_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(2, thread_name_prefix="proteus-fetch")
            for key in keys:
                if key in self._pending or (self.path / key).is_file():
                    continue
                future = self._pool.submit(self.ensure, key)
                self._pending[key] = future
                future.add_done_callback(functools.partial(self._forget, key))

    def _forget(self, key: str, _future: Future) -> None:
        with self._pending_lock:
            self._pending.pop(key, None)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # -- metadata --------------------------------------------------------------------------

    def _copy_metadata(self, fresh: bool) -> None:
        """Copy what is not a target shard. A mirror belongs to one sealed cache: when the
        remote seal record differs from the one copied last time (or ``fresh``: verify reads
        the store itself), the old copy goes."""
        make_folder(self.path)
        with flock(self.path / ".metadata.lock"):
            here = self.path / SEAL_KEY
            old = here.read_bytes() if here.is_file() else None
            if old != self.seal or self.seal is None or fresh:
                for child in self.path.iterdir():
                    if child.name != ".metadata.lock":
                        _remove(child)
            (self.path / ".url").write_text(self.url + "\n")
            # verify (fresh) and unfinished caches look at the markers too.
            markers = fresh or self.seal is None
            wanted = [
                k
                for k, size in self.listing.items()
                if (is_metadata(k) or (markers and is_marker(k)))
                and not _same_size(self.path / k, size)
                and k != SEAL_KEY
            ]
            copy_objects(self.store, wanted, self.path)
            if self.seal is not None:  # last: it says the copy above is complete
                _write(self.path / SEAL_KEY, self.seal)

    def _check_unchanged(self) -> None:
        if self.seal is None:
            return
        now = self.store.get(SEAL_KEY)
        if now != self.seal:
            raise ProteusError(
                f"{self.option} {self.url}: the cache changed while it was being read (its seal "
                "record is not the one read at start); its targets would mix two extractions. "
                "Start again to use the new cache"
            )

    # -- shards ----------------------------------------------------------------------------

    def _problem(self, key: str, path: Path) -> str | None:
        located = target_shard(key)
        if located is None:
            return None
        name, shard = located
        m = self.manifest
        spec = m.arrays.get(name)
        if spec is None:
            return f"no array {name} in the manifest"
        start, stop = shard_bounds(m, shard)
        chunk = int(np.prod(spec["shape"])) * np.dtype(spec["dtype"]).itemsize
        if path.stat().st_size == 0:
            return "empty object"
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return shard_problem(data, m.shard_views, stop - start, chunk)

    @staticmethod
    def _shard_name(key: str) -> str:
        located = target_shard(key)
        return f"targets/{located[0]} shard {located[1]}" if located else key


def copy_objects(store: ObjectStore, keys: list[str], dest: Path) -> None:
    """Download ``keys`` into ``dest`` (same relative paths), each atomically, 8 at a time:
    metadata is many small objects, and their round trips dominate."""

    def one(key: str) -> None:
        local = dest / key
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = partial_name(local)
        try:
            store.download(key, tmp)
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)

    with ThreadPoolExecutor(8, thread_name_prefix="proteus-copy") as pool:
        list(pool.map(one, keys))


def _same_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
