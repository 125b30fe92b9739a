"""A cache on an object store, read through a node-local copy: the shard cache.

Opening one lists the objects once and copies everything but the targets (manifest, tables,
codec state, progress markers: small) into ``<shard cache>/<hash of the URL>/``, which then is
an ordinary cache folder to every reader. Target shard files follow on first touch, whole:

- each arrives in a temporary file and is checked (its index and every chunk's crc32c)
  before it is renamed into place, so nothing unchecked is ever read;
- the node's shard cache keeps at most ``limit_bytes`` of shard files and evicts the least
  recently used (a file's mtime is touched on every use);
- every rank of a node shares it: ``flock`` on a lock file per shard makes one process fetch
  while the others wait, and one lock guards eviction;
- every fetch first re-reads the remote seal record, so a cache replaced under a running
  trainer stops it instead of mixing two caches' targets;
- ``prefetch`` fetches in the background what the sampler will ask for next.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import mmap
import os
import re
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proteus.common.cache.layout import PROGRESS_DIR, read_manifest, shard_bounds
from proteus.common.cache.shards import shard_problem
from proteus.common.errors import ProteusError
from proteus.common.objectstore import ObjectStore

ENV_ROOT, ENV_GB = "PROTEUS_SHARD_CACHE", "PROTEUS_SHARD_CACHE_GB"
DEFAULT_GB = 100.0
SEAL_KEY = f"{PROGRESS_DIR}/seal.json"
ROOT_KEY = "zarr.json"
_TARGET_SHARD = re.compile(r"^targets/([^/]+)/c/(\d+)(/0)*$")
_SHARD_STATS = re.compile(rf"^{PROGRESS_DIR}/shard-\d+\.stats\.npz$")


class DamagedShard(ProteusError):
    """A fetched shard that fails its checks; ``why`` says which."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


@dataclass(frozen=True)
class ShardCacheConfig:
    """Where a node keeps fetched shards, and how many bytes of them at most."""

    root: Path
    limit_bytes: int

    @classmethod
    def from_env(cls, root: Path | None = None, gb: float | None = None) -> ShardCacheConfig:
        """Options win, then $PROTEUS_SHARD_CACHE / $PROTEUS_SHARD_CACHE_GB, then
        ~/.cache/proteus/shards and 100 GB."""
        where = root or os.environ.get(ENV_ROOT) or Path.home() / ".cache/proteus/shards"
        size = gb if gb is not None else float(os.environ.get(ENV_GB) or DEFAULT_GB)
        if size <= 0:
            raise ProteusError(f"shard cache size {size} GB: must be positive")
        return cls(Path(where), int(size * 2**30))


def is_target_shard(key: str) -> bool:
    return _TARGET_SHARD.match(key) is not None


def is_metadata(key: str) -> bool:
    """What a mirror copies at open: all but target shards and per-shard statistics (only
    sealing reads those)."""
    return not is_target_shard(key) and not _SHARD_STATS.match(key)


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
        self.path = self.config.root / hashlib.sha256(self.url.encode()).hexdigest()[:16]
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
        local = self.path / key
        if local.is_file():
            _touch(local)
            return local
        if key not in self.listing:
            raise ProteusError(
                f"{self.option} {self.url}: {key} is missing; the cache is damaged "
                "(`proteus cache verify` lists everything wrong)"
            )
        with self._locked(f"shard-{hashlib.sha256(key.encode()).hexdigest()[:16]}"):
            if local.is_file():  # another rank of this node fetched it meanwhile
                _touch(local)
                return local
            self._check_unchanged()
            size = self.listing[key]
            self._make_room(size)
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = _partial(local)
            try:
                why = None
                for _attempt in range(2):  # one retry: a transfer can be torn, a flip cannot
                    self.store.download(key, tmp)
                    why = self._problem(key, tmp)
                    if why is None:
                        break
                if why is not None:
                    raise DamagedShard(
                        f"{self.option} {self.url}: {self._shard_name(key)} is damaged ({why}, "
                        "checked on arrival); refusing to use it — `proteus cache verify` "
                        "names every damaged shard",
                        why,
                    )
                os.replace(tmp, local)
            finally:
                tmp.unlink(missing_ok=True)
        return local

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
        self.path.mkdir(parents=True, exist_ok=True)
        with self._locked("metadata"):
            here = self.path / SEAL_KEY
            old = here.read_bytes() if here.is_file() else None
            if old != self.seal or self.seal is None or fresh:
                for child in self.path.iterdir():
                    if child.name != ".locks":
                        _remove(child)
            (self.path / ".url").write_text(self.url + "\n")
            wanted = [
                k
                for k, size in self.listing.items()
                if is_metadata(k) and not _same_size(self.path / k, size) and k != SEAL_KEY
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
        match = _TARGET_SHARD.match(key)
        if match is None:
            return None
        name, shard = match.group(1), int(match.group(2))
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
        match = _TARGET_SHARD.match(key)
        return f"targets/{match.group(1)} shard {match.group(2)}" if match else key

    def _make_room(self, size: int) -> None:
        limit = self.config.limit_bytes
        if size > limit:
            raise ProteusError(
                f"shard cache {self.config.root}: a shard of {self.url} is {size / 2**20:.1f} MiB, "
                f"more than the whole limit ({limit / 2**20:.1f} MiB); raise --shard-cache-gb "
                f"(or ${ENV_GB})"
            )
        with _flock(self.config.root / ".evict.lock"):
            files = sorted(_shard_files(self.config.root), key=lambda e: e[1])
            total = sum(s for _, _, s in files)
            for path, _mtime, s in files:
                if total + size <= limit:
                    break
                path.unlink(missing_ok=True)  # a process mapping it keeps its copy until unmap
                total -= s

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        with _flock(self.path / ".locks" / f"{name}.lock"):
            yield


def copy_objects(store: ObjectStore, keys: list[str], dest: Path) -> None:
    """Download ``keys`` into ``dest`` (same relative paths), each atomically, 8 at a time:
    metadata is many small objects, and their round trips dominate."""

    def one(key: str) -> None:
        local = dest / key
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = _partial(local)
        try:
            store.download(key, tmp)
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)

    with ThreadPoolExecutor(8, thread_name_prefix="proteus-copy") as pool:
        list(pool.map(one, keys))


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _shard_files(root: Path) -> Iterator[tuple[Path, float, int]]:
    """Every fetched target shard under the shard cache: (path, mtime, size)."""
    for mirror in root.iterdir() if root.is_dir() else ():
        targets = mirror / "targets"
        if not targets.is_dir():
            continue
        for path in targets.glob("*/c/**/*"):
            if path.is_file() and not path.name.startswith("."):
                st = path.stat()
                yield path, st.st_mtime, st.st_size


def _touch(path: Path) -> None:
    # Evicted by another rank meanwhile: the caller's open will say so.
    with contextlib.suppress(OSError):
        os.utime(path)


def _same_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _write(path: Path, data: bytes) -> None:
    from proteus.common.files import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
