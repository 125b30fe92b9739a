"""Where an extraction writes its cache: a local folder (:class:`FolderSink`), or an object
store through local staging (``publisher.py``: :class:`CachePublisher`).

Both write with the same :class:`CacheWriter`; they differ only in where its files end up,
so the extract stage drives one interface and never asks which it has:

- ``laid_out()`` / ``check_writable()``: what is there already, and whether we may write;
- ``create(...)``: lay a new cache out; ``grow(...)``: give a sealed one more views;
- ``open_writer(manifest)``: the writer of the laid-out cache and the shards already done;
- ``carry(writer, shard)``: before a grown shard is written again, its old rows readable;
- ``shard_written(writer, shard)``: after the writer finished a shard;
- ``seal(writer)`` and ``finish()``: seal once every shard is done, then clean up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from proteus.common.cache.manifest import Manifest
from proteus.common.cache.writer import CacheWriter, check_writable
from proteus.common.data.table import ImageTable
from proteus.common.views.records import ViewTable


class CacheSink(ABC):
    @abstractmethod
    def laid_out(self) -> Manifest | None:
        """The manifest of the cache already there (writing or sealed), or None where a new
        one may be laid out."""

    @abstractmethod
    def check_writable(self) -> None:
        """Fail before any teacher work if the destination cannot be written."""

    @abstractmethod
    def create(
        self, manifest: Manifest, images: ImageTable, views: ViewTable, fitted: dict | None
    ) -> None:
        """Lay out a new cache (tables, array metadata, fitted codec state)."""

    @abstractmethod
    def grow(self, grown: Manifest, added: ViewTable) -> None:
        """Lay out the new views of a sealed cache (:meth:`CacheWriter.grow`)."""

    @abstractmethod
    def open_writer(self, manifest: Manifest) -> tuple[CacheWriter, set[int]]:
        """The writer of the laid-out cache, and the shards already done."""

    def carry(self, writer: CacheWriter, shard: int) -> None:  # noqa: B027
        """Make the stored rows of ``shard`` readable by ``writer.stored_rows`` (a grown
        shard written again); a folder has them at hand."""

    def shard_written(self, writer: CacheWriter, shard: int) -> None:  # noqa: B027
        """After ``writer`` wrote shard ``shard`` whole; a folder has nothing more to do."""

    @abstractmethod
    def seal(self, writer: CacheWriter) -> Manifest:
        """Seal the cache once every shard is done (one process)."""

    def finish(self) -> None:  # noqa: B027
        """After sealing, on every process; a folder has nothing to clean up."""


class FolderSink(CacheSink):
    """A cache folder on a file system every process mounts."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def laid_out(self) -> Manifest | None:
        return CacheWriter.laid_out(self.path)

    def check_writable(self) -> None:
        check_writable(self.path)

    def create(
        self, manifest: Manifest, images: ImageTable, views: ViewTable, fitted: dict | None
    ) -> None:
        CacheWriter.create(self.path, manifest, images, views, fitted)

    def grow(self, grown: Manifest, added: ViewTable) -> None:
        CacheWriter.grow(self.path, grown, added)

    def open_writer(self, manifest: Manifest) -> tuple[CacheWriter, set[int]]:
        writer = CacheWriter(self.path, manifest)
        return writer, writer.done_shards()

    def seal(self, writer: CacheWriter) -> Manifest:
        return writer.seal()
