"""Writing a cache: lay it out once, fill whole shards, mark each done, seal.

Crash safety comes from three rules. Every file write is atomic (zarr's LocalStore writes a
temporary file and renames it). A shard counts as done only when its progress marker exists,
and the marker is written after all of the shard's target files. A shard is always written
whole, by one process, so no read-modify-write of a shard ever happens (two writers touching
one shard lose data) and a re-run simply rewrites any shard without a marker.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import zarr

from proteus.common.cache.codec import TargetCodec
from proteus.common.cache.layout import (
    PROGRESS_DIR,
    child_array,
    child_group,
    create_target,
    is_cache,
    load_codec,
    open_root,
    progress_path,
    read_image_table,
    read_view_table,
    seal_path,
    shard_bounds,
    shard_stats_path,
    write_codec_state,
    write_table,
)
from proteus.common.cache.manifest import (
    CREATING,
    GROWING,
    MANIFEST_KEY,
    SEALED,
    WRITING,
    Manifest,
)
from proteus.common.cache.stats import StatsSums
from proteus.common.data.table import STATUS_FAILED, STATUS_OK, ImageTable
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.faults import failpoint
from proteus.common.runtime.files import atomic_write_text
from proteus.common.views.records import ViewTable


class CacheWriter:
    def __init__(self, path: Path, manifest: Manifest):
        self.path = Path(path)
        self.manifest = manifest
        self._root = open_root(self.path, mode="r+")

    @staticmethod
    def laid_out(path: Path) -> Manifest | None:
        """The manifest of the cache already laid out at ``path`` (writing or sealed), or
        None where a new one may be laid out: nothing there, an empty folder, or a cache
        killed while it was being laid out (its state still reads "creating")."""
        path = Path(path)
        if not is_cache(path):
            if path.exists() and any(path.iterdir()):
                raise ProteusError(
                    f"--out {path}: folder exists, is not empty and is not a proteus cache; "
                    "choose a new folder"
                )
            return None
        raw = open_root(path).attrs.get(MANIFEST_KEY)
        if not isinstance(raw, dict):
            raise ProteusError(f"--out {path}: a Zarr store that is not a proteus cache")
        if raw.get("state") == CREATING:
            return None
        return Manifest.from_dict(raw, where=path)

    def tables(self) -> tuple[ImageTable, ViewTable]:
        """The image and view tables laid out with the cache."""
        return read_image_table(self._root), read_view_table(self._root)

    def codecs(self) -> dict[str, TargetCodec]:
        """Every target's codec, with its fitted state (PCA's basis) where it has one."""
        return {name: load_codec(self._root, self.manifest, name) for name in self.manifest.targets}

    @classmethod
    def create(
        cls,
        path: Path,
        manifest: Manifest,
        images: ImageTable,
        views: ViewTable,
        fitted: dict | None = None,
    ) -> CacheWriter:
        """Lay out a new cache. Until the final manifest write its state reads "creating",
        which tells a re-run that the folder is ours and may be laid out again."""
        path = Path(path)
        if path.exists():
            shutil.rmtree(path)
        # The group and its "creating" mark appear in one write (no unmarked zarr.json).
        creating = {"format_version": manifest.format_version, "state": CREATING}
        root = zarr.create_group(str(path), zarr_format=3, attributes={MANIFEST_KEY: creating})
        write_table(root.require_group("images"), images.columns())
        write_table(root.require_group("views"), views.columns())
        for name, spec in manifest.arrays.items():
            create_target(
                root, name, len(views), tuple(spec["shape"]), spec["dtype"], manifest.shard_views
            )
        if fitted:
            write_codec_state(root, {name: state.arrays() for name, state in fitted.items()})
        (path / PROGRESS_DIR).mkdir()
        manifest.state = WRITING
        writer = cls(path, manifest)
        writer.save_manifest()
        return writer

    @classmethod
    def grow(cls, path: Path, grown: Manifest, added: ViewTable) -> CacheWriter:
        """Give a sealed cache more views: ``grown`` is its manifest with the new segment
        (state "growing"), ``added`` the new views' records. Every step can be done again:
        a re-run after a kill finds the "growing" manifest and calls this once more.

        Rows below ``grown.grown_at`` keep their records and stored bytes; the target arrays
        get the new rows; the shard holding both old and new rows loses its marker, so it is
        written again (its old rows carried, see :meth:`stored_rows`); the seal record goes.
        """
        path = Path(path)
        _make_writable(path)
        root = open_root(path, mode="r+")
        grown.state = GROWING
        root.attrs[MANIFEST_KEY] = grown.to_dict()  # first: a kill from here on resumes growing
        old = grown.grown_at
        views = ViewTable.concat([read_view_table(root)[:old], added])
        write_table(child_group(root, "views"), views.columns())
        failpoint("grow")  # the new views laid out, the arrays not yet resized
        targets = child_group(root, "targets")
        for name, spec in grown.arrays.items():
            child_array(targets, name).resize((len(views), *spec["shape"]))
        if old % grown.shard_views:
            progress_path(path, old // grown.shard_views).unlink(missing_ok=True)
        seal_path(path).unlink(missing_ok=True)
        grown.state = WRITING
        writer = cls(path, grown)
        writer.save_manifest()
        return writer

    def stored_rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Every target's stored arrays for views [start, stop): a grown shard's old rows,
        written again byte for byte."""
        targets = child_group(self._root, "targets")
        return {
            name: np.asarray(child_array(targets, name)[start:stop])
            for name in self.manifest.arrays
        }

    def save_manifest(self) -> None:
        self._root.attrs[MANIFEST_KEY] = self.manifest.to_dict()

    def done_shards(self) -> set[int]:
        done = set()
        for shard in range(self.manifest.num_shards):
            if _read_marker(progress_path(self.path, shard)) is not None:
                done.add(shard)
        return done

    def write_shard(
        self,
        shard: int,
        targets: dict[str, np.ndarray],
        failed: list[dict],
        stats: StatsSums,
    ) -> None:
        """Write all of one shard's targets and statistics, then its marker (which makes it
        count)."""
        start, stop = shard_bounds(self.manifest, shard)
        group = child_group(self._root, "targets")
        try:
            for name, values in targets.items():
                if values.shape[0] != stop - start:
                    raise ValueError(f"shard {shard}: {values.shape[0]} rows for {stop - start}")
                failpoint("shard-write")  # between target files of one shard
                # write_empty_chunks is a runtime setting, not stored metadata: set it again,
                # so all-zero chunks (views of undecodable images) are stored like any other.
                target = child_array(group, name).with_config({"write_empty_chunks": True})
                target[start:stop] = values
            stats.save(shard_stats_path(self.path, shard))
            marker = {"shard": shard, "views": [start, stop], "failed": failed}
            atomic_write_text(progress_path(self.path, shard), json.dumps(marker))
        except OSError as exc:
            raise _write_error(self.path, f"shard {shard}", exc) from exc

    def seal(self, target_bytes: int | None = None) -> Manifest:
        """Check every shard is done, fold render failures into the tables, mark sealed.
        ``target_bytes``: the targets' size where they are not under this folder (a cache
        published to an object store)."""
        missing = sorted(set(range(self.manifest.num_shards)) - self.done_shards())
        if missing:
            raise ProteusError(
                f"{self.path}: cannot seal, {len(missing)} shard(s) unwritten (first: "
                f"{missing[0]}); re-run the same extract command"
            )
        failed = self._collect_failures()
        if self.manifest.grown_from:
            # The old rows of a shard written again are carried, not rendered: their images'
            # failures are the ones the cache recorded before it grew.
            earlier = [s for s in self.manifest.skipped if s.get("stage") == "render"]
            known = {item["image"] for item in failed}
            failed = sorted(
                failed + [s for s in earlier if s["image"] not in known],
                key=lambda item: item["image"],
            )
        images = read_image_table(self._root)
        view_images = read_view_table(self._root).image
        status = images.status.copy()
        status[status == STATUS_FAILED] = STATUS_OK  # recomputed from markers: idempotent
        for item in failed:
            status[item["image"]] = STATUS_FAILED
        try:
            write_table(child_group(self._root, "images"), {"status": status})
            failpoint("seal")
            m = self.manifest
            m.skipped = [s for s in m.skipped if s.get("stage") == "probe"] + failed
            usable = int((status == STATUS_OK).sum())
            m.counts |= {
                "usable_images": usable,
                "skipped_images": len(m.skipped),
                "usable_views": int((status[view_images] == STATUS_OK).sum()),
                "target_bytes": (
                    _tree_bytes(self.path / "targets") if target_bytes is None else target_bytes
                ),
            }
            _remove_partials(self.path)
            m.stats = self._merged_stats()
            m.state = SEALED
            # The digest goes first: a kill between the two writes leaves state "writing",
            # and the re-run seals again.
            atomic_write_text(seal_path(self.path), json.dumps({"manifest_sha256": m.digest()}))
            self.save_manifest()
            # Merged into the manifest now; a kill before this line leaves files the re-run
            # (which finds the cache sealed) never reads.
            for shard in range(m.num_shards):
                shard_stats_path(self.path, shard).unlink(missing_ok=True)
        except OSError as exc:
            raise _write_error(self.path, "the manifest", exc) from exc
        _make_read_only(self.path)
        return m

    def _merged_stats(self) -> dict[str, dict]:
        m = self.manifest
        # A grown cache: the statistics sealed before it grew, plus its new shards' (the old
        # rows of a shard written again are carried, so its file counts only the new ones).
        first = m.grown_at // m.shard_views
        paths = [shard_stats_path(self.path, s) for s in range(first, m.num_shards)]
        missing = [p for p in paths if not p.is_file()]
        if missing or (m.grown_from and not m.stats):
            return {}  # shards written by a proteus before statistics existed
        sums = StatsSums.merged(paths)
        if m.grown_from:
            sums.add(StatsSums.from_manifest(m.stats))
        return sums.to_manifest()

    def _collect_failures(self) -> list[dict]:
        seen: dict[int, dict] = {}
        for shard in range(self.manifest.num_shards):
            marker = _read_marker(progress_path(self.path, shard)) or {}
            for item in marker.get("failed", []):
                seen.setdefault(item["image"], item | {"stage": "render"})
        return [seen[i] for i in sorted(seen)]


def check_writable(out: Path) -> None:
    """Fail before any teacher work if ``out`` cannot be created or written."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".proteus-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ProteusError(
            f"--out {out}: cannot write there ({exc.strerror or exc}); choose a writable folder"
        ) from exc


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent or torn: the shard is simply written again


def _write_error(cache: Path, what: str, exc: OSError) -> ProteusError:
    if exc.errno == errno.ENOSPC:
        return ProteusError(
            f"{cache}: disk full while writing {what}; free space and re-run the same command "
            "to resume (finished shards are kept)"
        )
    return ProteusError(f"{cache}: cannot write {what} ({exc.strerror or exc})")


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _remove_partials(cache: Path) -> None:
    # Temporary files of writes a kill interrupted; never referenced by anything.
    for leftover in cache.rglob("*.partial"):
        leftover.unlink(missing_ok=True)


def _make_writable(cache: Path) -> None:
    # A sealed cache's files are read-only (_make_read_only); growing writes some again.
    for path in cache.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode | 0o200)


def _make_read_only(cache: Path) -> None:
    # Files only: folders stay writable so the cache can still be deleted with rm -r.
    for path in cache.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode & ~0o222)
