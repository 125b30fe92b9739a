"""Finding the images to extract: an ImageFolder tree, a flat folder, a list file, or
webdataset tar shards (a folder of .tar files, one .tar, or a brace pattern; tarshards.py).

The order is the sorted relative path, so the image index (which seeds every view record)
does not depend on the file system's listing order. The fingerprint covers paths, labels and
file sizes, so a resumed extraction notices a changed data set.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proteus.common.data.tarshards import (
    image_byte_size,
    is_shard_spec,
    remote_folder,
    samples,
    shard_files,
    split_url,
)
from proteus.common.runtime.errors import ProteusError
from proteus.common.storage.objectstore import is_url
from proteus.common.storage.shardcache import ShardCacheConfig

# What DALI's CPU decoders read. Files with other suffixes in a folder are not images.
IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".webp",
        ".tif",
        ".tiff",
        ".jp2",
        ".pnm",
        ".ppm",
        ".pgm",
        ".pbm",
    }
)


@dataclass(frozen=True)
class ImageList:
    root: Path  # paths are relative to this folder (absolute entries of a list file stay so)
    paths: tuple[str, ...]  # POSIX paths, sorted
    labels: np.ndarray  # (N,) int64 class index, -1 when the source has no labels
    classes: tuple[str, ...]  # class folder names, index = label
    kind: str  # "imagefolder" | "flat" | "list" | "webdataset"
    # Tar shards on an object store: the folder's URL (``root`` is the local stand-in).
    location: str | None = None

    def recorded_root(self) -> str:
        """What the manifest records as the images' root: the URL, or the absolute folder."""
        return self.location or str(self.root.resolve())

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        """sha256 over (path, label, size in bytes) of every image; -1 for a missing file."""
        digest = hashlib.sha256()
        for path, label in zip(self.paths, self.labels.tolist(), strict=True):
            try:
                size = image_byte_size(self.root / path)
            except OSError:
                size = -1
            digest.update(f"{path}\t{label}\t{size}\n".encode())
        return digest.hexdigest()


def data_root(data: Path | str, shard_cache: ShardCacheConfig | None = None) -> Path:
    """The folder image paths are relative to: the data folder, a list file's folder, or the
    folder of the tar shards (for shards on an object store, the local folder standing for
    theirs, tarshards.py)."""
    if is_url(data):
        return remote_folder(split_url(str(data))[0], config=shard_cache)
    data = Path(data)
    if is_shard_spec(data) and not data.is_dir():
        return data.parent.resolve()
    return (data.parent if data.is_file() else data).resolve()


def resolve_root(root: Path | str, shard_cache: ShardCacheConfig | None = None) -> Path:
    """A recorded (or overriding) images root as a local folder: a URL is the folder of tar
    shards on an object store, and becomes its local stand-in in ``shard_cache``."""
    return data_root(root, shard_cache) if is_url(root) else Path(root)


def scan_images(
    data: Path | str, option: str = "--data", shard_cache: ShardCacheConfig | None = None
) -> ImageList:
    """``option`` names the command-line option in error messages; ``shard_cache`` is where
    tar shards on an object store are fetched to (default: ShardCacheConfig.from_env())."""
    if is_url(data):
        return _from_shards(data, option, shard_cache)
    data = Path(data)
    if is_shard_spec(data):
        return _from_shards(data, option)
    if data.is_file():
        return _from_list_file(data, option)
    if not data.is_dir():
        raise ProteusError(f"{option} {data}: no such folder or list file")
    top = _walk(data, recurse=False)
    class_dirs = sorted(e.name for e in os.scandir(data) if e.is_dir() and not _hidden(e.name))
    per_class = {name: _walk(data / name, recurse=True) for name in class_dirs}
    per_class = {name: files for name, files in per_class.items() if files}
    if per_class and top:
        raise ProteusError(
            f"{option} {data}: images both at the top level ({top[0]}) and in class sub-folders; "
            "move them into a class folder, or pass a list file"
        )
    if per_class:
        classes = tuple(sorted(per_class))
        entries = sorted(
            (f"{name}/{rel}", label)
            for label, name in enumerate(classes)
            for rel in per_class[name]
        )
        paths, labels = zip(*entries, strict=True)
        return ImageList(data, paths, np.array(labels, np.int64), classes, "imagefolder")
    if top:
        return ImageList(data, tuple(sorted(top)), np.full(len(top), -1, np.int64), (), "flat")
    raise ProteusError(
        f"{option} {data}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
    )


def _from_shards(
    data: Path | str, option: str, shard_cache: ShardCacheConfig | None = None
) -> ImageList:
    """Every sample's image of every shard, as ``<shard>.tar/<member>`` (shard order, then
    key order); labels from the samples' ``.cls`` members."""
    entries: list[tuple[str, int]] = []
    for shard in shard_files(data, option, shard_cache):
        entries += [(f"{shard.name}/{m}", label) for m, label in samples(shard, IMAGE_SUFFIXES)]
    if not entries:
        raise ProteusError(f"{option} {data}: the tar shards hold no images")
    paths, labels = zip(*entries, strict=True)
    root = data_root(data, shard_cache)
    location = split_url(str(data))[0] if is_url(data) else None
    return ImageList(root, paths, np.array(labels, np.int64), (), "webdataset", location)


def _walk(folder: Path, recurse: bool) -> list[str]:
    """Image files under ``folder`` as POSIX paths relative to it; symlinks followed once."""
    found: list[str] = []
    seen: set[str] = set()

    def fail(err: OSError) -> None:
        raise ProteusError(f"cannot read folder {err.filename} ({err.strerror})")

    for here, dirs, files in os.walk(folder, onerror=fail, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:  # a symlink loop, or a second link to a folder already walked
            dirs.clear()
            continue
        seen.add(real)
        rel = Path(here).relative_to(folder)
        found += [(rel / f).as_posix() for f in files if _is_image(f)]
        dirs[:] = sorted(d for d in dirs if not _hidden(d)) if recurse else []
    return found


def _is_image(name: str) -> bool:
    return not _hidden(name) and Path(name).suffix.lower() in IMAGE_SUFFIXES


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _from_list_file(path: Path, option: str) -> ImageList:
    """One image per line, optionally ``<TAB><integer label>``; ``#`` starts a comment."""
    root = path.parent
    entries: list[tuple[str, int]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, label = line.partition("\t")
        try:
            entries.append((name.strip(), int(label) if label.strip() else -1))
        except ValueError:
            raise ProteusError(
                f"{option} {path}, line {number}: label {label!r} is not an integer "
                "(format: path, optionally a tab and an integer label)"
            ) from None
    if not entries:
        raise ProteusError(f"{option} {path}: the list names no images")
    entries.sort()
    paths, labels = zip(*entries, strict=True)
    return ImageList(root, paths, np.array(labels, np.int64), (), "list")
