"""Writing a cache to an object store: the local writer's files, uploaded whole, in order.

Each process writes into its own local staging folder with :class:`CacheWriter`, exactly as
for a local cache, and this class uploads what it wrote, each file as one object (a put,
never a read-modify-write, so concurrent writers cannot lose each other's data). The order
keeps the local crash rules on the store:

- layout: a root ``zarr.json`` in state "creating" first (it marks the prefix as ours), then
  tables, array metadata and codec state, then the root ``zarr.json`` in state "writing";
- a shard: its target files, then its statistics, then its progress marker, which alone
  makes it count; a kill anywhere before the marker leaves a shard that is simply written
  again. Resuming lists the markers on the store;
- sealing: the updated image status table, then ``seal.json``, then the sealed root
  ``zarr.json``; per-shard statistics are deleted only after that;
- growing (more views for a sealed cache): the root ``zarr.json`` in state "growing" first,
  then the seal record goes, then the grown tables and array metadata, then the marker of
  the shard holding old and new rows, then the root in state "writing". A re-run finds
  "growing" and does it all again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from proteus.common.cache.layout import (
    PROGRESS_DIR,
    ROOT_KEY,
    marker_shard,
    progress_path,
    seal_path,
    shard_key,
    shard_stats_path,
)
from proteus.common.cache.manifest import CREATING, GROWING, MANIFEST_KEY, Manifest
from proteus.common.cache.mirror import copy_objects, is_metadata
from proteus.common.cache.sink import CacheSink
from proteus.common.cache.writer import CacheWriter
from proteus.common.data.table import ImageTable
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.faults import failpoint
from proteus.common.storage.objectstore import ObjectStore
from proteus.common.views.records import ViewTable

ENV_STAGING = "PROTEUS_STAGING"
_WRITE_TEST = ".proteus-write-test-"  # a probe object a kill may leave behind: not foreign


class CachePublisher(CacheSink):
    """The cache at ``url``, written through ``staging`` (this process's own folder)."""

    def __init__(self, url: str, staging_root: Path | None, rank: int):
        self.url = url.rstrip("/")
        self.store = ObjectStore(self.url, "--out")
        root = staging_root or os.environ.get(ENV_STAGING) or Path.home() / ".cache/proteus/staging"
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.staging = Path(root) / digest / f"rank-{rank}"
        self._laid_out_here = False  # staging holds the layout this process just uploaded

    def check_writable(self) -> None:
        """Fail before any teacher work on a missing bucket, credentials or endpoint."""
        key = f"{_WRITE_TEST}{os.getpid()}"
        self.store.put(key, b"")
        self.store.delete([key])

    def laid_out(self) -> Manifest | None:
        """Like :meth:`CacheWriter.laid_out`: the manifest of the cache there (writing or
        sealed), or None where one may be laid out."""
        raw = self.store.get(ROOT_KEY)
        if raw is None:
            if any(not key.startswith(_WRITE_TEST) for key in self.store.list()):
                raise ProteusError(
                    f"--out {self.url}: holds objects but no proteus cache; choose a new prefix"
                )
            return None
        try:
            manifest = json.loads(raw).get("attributes", {}).get(MANIFEST_KEY)
        except (ValueError, AttributeError):
            manifest = None
        if not isinstance(manifest, dict):
            raise ProteusError(f"--out {self.url}: a Zarr store that is not a proteus cache")
        if manifest.get("state") == CREATING:
            return None
        return Manifest.from_dict(manifest, where=self.url)

    def fresh_staging(self) -> Path:
        try:
            if self.staging.exists():
                shutil.rmtree(self.staging)
            self.staging.mkdir(parents=True)
        except OSError as exc:
            raise ProteusError(
                f"--staging: cannot write {self.staging} ({exc.strerror or exc}); choose a "
                f"writable folder (or ${ENV_STAGING})"
            ) from exc
        return self.staging

    def remove_staging(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def publish_layout(self) -> None:
        """Upload the cache CacheWriter.create laid out in staging (replacing a layout a kill
        interrupted: the store holds nothing else, :meth:`laid_out` saw to that)."""
        old = list(self.store.list())
        if old:
            self.store.delete(old)
        root_json = (self.staging / ROOT_KEY).read_bytes()
        creating = json.loads(root_json)
        creating["attributes"][MANIFEST_KEY] = {
            "format_version": creating["attributes"][MANIFEST_KEY]["format_version"],
            "state": CREATING,
        }
        self.store.put(ROOT_KEY, json.dumps(creating).encode())
        for path in sorted(self.staging.rglob("*")):
            key = path.relative_to(self.staging).as_posix()
            if path.is_file() and key != ROOT_KEY and not path.name.startswith("."):
                self.store.put(key, path)
        self.store.put(ROOT_KEY, root_json)
        self._laid_out_here = True

    def pull_metadata(self) -> Path:
        """A fresh staging folder holding the store's layout (tables, array metadata, codec
        state): what CacheWriter needs to write shards and to seal."""
        if self._laid_out_here:  # the process that laid it out has it already
            return self.staging
        staging = self.fresh_staging()
        listing = self.store.list()
        copy_objects(self.store, [k for k in listing if is_metadata(k)], staging)
        (staging / PROGRESS_DIR).mkdir(exist_ok=True)  # a folder: no object stands for it
        return staging

    def done_shards(self) -> set[int]:
        shards = (marker_shard(key) for key in self.store.list(f"{PROGRESS_DIR}/"))
        return {shard for shard in shards if shard is not None}

    def publish_shard(self, manifest: Manifest, shard: int) -> None:
        """Upload shard ``shard`` (written in staging) and drop the local copy of its
        targets: the store is where they live now."""
        targets = [
            shard_key(name, shard, 1 + len(spec["shape"])) for name, spec in manifest.arrays.items()
        ]
        for key in targets:
            self.store.put(key, self.staging / key)
            failpoint("shard-upload")  # between a shard's objects
        stats = shard_stats_path(self.staging, shard)
        if stats.is_file():
            self.store.put(self._key(stats), stats)
        self.store.put(
            self._key(progress_path(self.staging, shard)), progress_path(self.staging, shard)
        )
        for key in targets:
            (self.staging / key).unlink(missing_ok=True)

    def pull_progress(self) -> None:
        """Every shard's marker and statistics into staging: what sealing reads."""
        wanted = [
            k for k in self.store.list(f"{PROGRESS_DIR}/") if k.startswith(f"{PROGRESS_DIR}/shard-")
        ]
        copy_objects(self.store, wanted, self.staging)

    def target_bytes(self) -> int:
        """What a local cache's targets/ folder would hold (shards and array metadata)."""
        return sum(self.store.list("targets/").values())

    def publish_seal(self, manifest: Manifest) -> None:
        """Upload what CacheWriter.seal changed, the seal record and root last; then drop the
        per-shard statistics (merged into the manifest now)."""
        for path in sorted((self.staging / "images" / "status").rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                self.store.put(self._key(path), path)
        failpoint("seal-upload")
        self.store.put(self._key(seal_path(self.staging)), seal_path(self.staging))
        self.store.put(ROOT_KEY, self.staging / ROOT_KEY)
        stats = [self._key(shard_stats_path(self.staging, s)) for s in range(manifest.num_shards)]
        present = self.store.list(f"{PROGRESS_DIR}/")
        self.store.delete([k for k in stats if k in present])

    # -- the sink interface --------------------------------------------------------------
    def create(
        self, manifest: Manifest, images: ImageTable, views: ViewTable, fitted: dict | None
    ) -> None:
        CacheWriter.create(self.fresh_staging(), manifest, images, views, fitted)
        self.publish_layout()

    def grow(self, grown: Manifest, added: ViewTable) -> None:
        staging = self.pull_metadata()
        CacheWriter.grow(staging, grown, added)
        root_json = (staging / ROOT_KEY).read_bytes()
        growing = json.loads(root_json)
        growing["attributes"][MANIFEST_KEY]["state"] = GROWING
        self.store.put(ROOT_KEY, json.dumps(growing).encode())
        self._delete_present([self._key(seal_path(staging))])
        for path in sorted(staging.rglob("*")):
            key = self._key(path)
            if path.is_file() and key != ROOT_KEY and not path.name.startswith("."):
                self.store.put(key, path)
        if grown.grown_at % grown.shard_views:
            shard = grown.grown_at // grown.shard_views
            self._delete_present([self._key(progress_path(staging, shard))])
        self.store.put(ROOT_KEY, root_json)
        self._laid_out_here = True

    def open_writer(self, manifest: Manifest) -> tuple[CacheWriter, set[int]]:
        return CacheWriter(self.pull_metadata(), manifest), self.done_shards()

    def carry(self, writer: CacheWriter, shard: int) -> None:
        m = writer.manifest
        keys = [shard_key(name, shard, 1 + len(spec["shape"])) for name, spec in m.arrays.items()]
        copy_objects(self.store, keys, self.staging)

    def shard_written(self, writer: CacheWriter, shard: int) -> None:
        self.publish_shard(writer.manifest, shard)

    def seal(self, writer: CacheWriter) -> Manifest:
        self.pull_progress()  # markers and statistics of every rank's shards
        manifest = writer.seal(target_bytes=self.target_bytes())
        self.publish_seal(manifest)
        return manifest

    def finish(self) -> None:
        self.remove_staging()  # everything is on the store now

    def _delete_present(self, keys: list[str]) -> None:
        # A re-run of an interrupted growth finds some already gone.
        present = {key for key in keys if self.store.get(key) is not None}
        self.store.delete(sorted(present))

    def _key(self, path: Path) -> str:
        return path.relative_to(self.staging).as_posix()
