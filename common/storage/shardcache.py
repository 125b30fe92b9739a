"""The node-local shard cache: whole remote files (target shards of a remote cache, webdataset
tar shards) fetched on first touch and kept on local disk under a size limit.

Layout: ``<root>/<sha256 of the remote prefix, 16 hex>/<key>``, one folder per remote cache or
data folder. Every process of a node shares it:

- ``flock`` on a lock file per fetched file makes one process download while the others
  wait (then find it there);
- a file arrives under a temporary name and is renamed into place only after its check
  passed, so no process ever opens a partial or unchecked file;
- the least recently used files (mtime, touched on every use) are evicted, under one lock,
  when a new one would exceed the limit. A process that still maps an evicted file keeps
  reading its copy until it unmaps it (POSIX unlink semantics).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from proteus.common.runtime.errors import ProteusError
from proteus.common.storage.objectstore import ObjectStore

ENV_ROOT, ENV_GB = "PROTEUS_SHARD_CACHE", "PROTEUS_SHARD_CACHE_GB"
DEFAULT_GB = 100.0
# What eviction may delete: fetched target shards and tar shards, never metadata.
_EVICTABLE = ("*/targets/*/c/**/*", "*/*.tar")


class DamagedFile(ProteusError):
    """A fetched file that fails its check twice; ``why`` says how."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


@dataclass(frozen=True)
class ShardCacheConfig:
    """Where a node keeps fetched files, and how many bytes of them at most."""

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

    def folder(self, url: str) -> Path:
        """The local folder standing for the remote prefix ``url``."""
        return self.root / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]

    def fetch(
        self,
        store: ObjectStore,
        key: str,
        size: int,
        local: Path,
        check: Callable[[Path], str | None] | None = None,
        before: Callable[[], None] | None = None,
    ) -> Path:
        """``local``, holding object ``key`` (``size`` bytes), fetched if not here yet.
        ``check`` says why a downloaded file is unusable (None: fine); ``before`` runs
        under the lock right before a download (a remote cache re-checks its seal)."""
        if local.is_file():
            touch(local)
            return local
        name = hashlib.sha256(f"{store.url}/{key}".encode()).hexdigest()[:24]
        with flock(self.root / ".locks" / f"{name}.lock"):
            if local.is_file():  # another process of this node fetched it meanwhile
                touch(local)
                return local
            if before is not None:
                before()
            self._make_room(size, store.url)
            tmp = partial_name(local)
            try:
                why = None
                for _attempt in range(2):  # one retry: a transfer can be torn, a flip cannot
                    store.download(key, tmp)
                    why = check(tmp) if check else None
                    if why is None:
                        break
                if why is not None:
                    raise DamagedFile(f"{store.url}/{key}: {why}", why)
                os.replace(tmp, local)
            finally:
                tmp.unlink(missing_ok=True)
        return local

    def _make_room(self, size: int, url: str) -> None:
        if size > self.limit_bytes:
            raise ProteusError(
                f"shard cache {self.root}: a file of {url} is {size / 2**20:.1f} MiB, more than "
                f"the whole limit ({self.limit_bytes / 2**20:.1f} MiB); raise --shard-cache-gb "
                f"(or ${ENV_GB})"
            )
        with flock(self.root / ".evict.lock"):
            files = sorted(self._fetched(), key=lambda e: e[1])
            total = sum(s for _, _, s in files)
            for path, _mtime, s in files:
                if total + size <= self.limit_bytes:
                    break
                path.unlink(missing_ok=True)
                total -= s

    def _fetched(self) -> Iterator[tuple[Path, float, int]]:
        """Every evictable file: (path, mtime, size)."""
        if not self.root.is_dir():
            return
        for pattern in _EVICTABLE:
            for path in self.root.glob(pattern):
                if not path.name.startswith(".") and path.is_file():
                    st = path.stat()
                    yield path, st.st_mtime, st.st_size


def make_folder(path: Path) -> Path:
    """``path`` created if needed; a folder that cannot be made is the user's to fix."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProteusError(
            f"shard cache: cannot create {path} ({exc.strerror or exc}); choose a writable "
            f"--shard-cache (or ${ENV_ROOT})"
        ) from exc
    return path


@contextmanager
def flock(path: Path) -> Iterator[None]:
    make_folder(path.parent)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def touch(path: Path) -> None:
    # Evicted by another process meanwhile: the caller's open will say so.
    with contextlib.suppress(OSError):
        os.utime(path)


def partial_name(path: Path) -> Path:
    """A temporary name next to ``path``: hidden, never evicted, unique per thread."""
    make_folder(path.parent)
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
