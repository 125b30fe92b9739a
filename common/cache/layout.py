"""Where things live inside a cache, and the tables both stages read.

cache/                       a Zarr v3 group; attributes.proteus is the manifest
  images/{path,label,height,width,transcode,status}   one row per input image
  views/{image,view,crop,flip,color,grayscale,erase,ra_op,ra_param,erase_seed}
                                                      one row per rendered view
  targets/{cls,patch,layer_<i>}[, <name>_scale]       one row per view, sharded
  pca/<name>_mean, pca/<name>_basis                   fitted codec state (PCA only, today)
  progress/shard-<n>.json    (not Zarr) written after shard n's targets are on disk
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec

from proteus.common.cache.manifest import MANIFEST_KEY, Manifest
from proteus.common.data.table import ImageTable
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.records import ViewTable

PROGRESS_DIR = "progress"
# Each view's target is one inner chunk: raw little-endian bytes plus a crc32c, so a flipped
# byte is caught on read, and a reader can also compute the chunk's offset itself.
TARGET_CODEC = "sharding(bytes, crc32c); one chunk per view"


def is_cache(path: Path) -> bool:
    return (Path(path) / ROOT_KEY).is_file()


def open_root(path: Path, mode: Literal["r", "r+", "a", "w", "w-"] = "r") -> zarr.Group:
    try:
        return zarr.open_group(str(path), mode=mode, zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise ProteusError(f"{path}: not a proteus cache (no Zarr v3 group there)") from exc


def read_manifest(path: Path) -> Manifest:
    root = open_root(path)
    data = root.attrs.get(MANIFEST_KEY)
    if not isinstance(data, dict):
        raise ProteusError(f"{path}: a Zarr group without a proteus manifest; not a cache")
    return Manifest.from_dict(data, where=path)


def write_table(group: zarr.Group, columns: dict[str, np.ndarray]) -> None:
    """Tables are written once, whole, as one chunk per column (small next to targets)."""
    for name, values in columns.items():
        values = np.asarray(values)
        dtype = str if values.dtype.kind in "UO" else values.dtype
        chunks = (max(1, len(values)), *values.shape[1:])
        arr = group.create_array(
            name,
            shape=values.shape,
            dtype=dtype,
            chunks=chunks,
            config={"write_empty_chunks": True},
            overwrite=True,
        )
        if len(values):
            arr[...] = values


def child_array(group: zarr.Group, name: str) -> zarr.Array:
    """``group[name]``, which must be an array (a damaged cache may hold anything there)."""
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise ProteusError(f"{group.store_path}/{name}: not an array; the cache is damaged")
    return node


def child_group(group: zarr.Group, name: str) -> zarr.Group:
    node = group[name]
    if not isinstance(node, zarr.Group):
        raise ProteusError(f"{group.store_path}/{name}: not a group; the cache is damaged")
    return node


def read_array(array: zarr.Array) -> np.ndarray:
    """All of a (small) array as numpy."""
    return np.asarray(array[...])


def _read_table(group: zarr.Group, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    out = {}
    for name in names:
        values = read_array(child_array(group, name))
        # numpy 2 hands zarr strings back as StringDType; the tables use plain str arrays.
        out[name] = np.array(values.tolist(), dtype=str) if values.dtype.kind in "OT" else values
    return out


def read_image_table(root: zarr.Group) -> ImageTable:
    return ImageTable(**_read_table(child_group(root, "images"), ImageTable.COLUMNS))


def read_view_table(root: zarr.Group) -> ViewTable:
    # Caches from before RandAugment lack its columns; ViewTable fills in "none".
    group = child_group(root, "views")
    present = tuple(name for name in ViewTable.FIELDS if name in group)
    return ViewTable(**_read_table(group, present))


def create_target(
    root: zarr.Group, name: str, views: int, shape: tuple[int, ...], dtype: str, shard_views: int
) -> zarr.Array:
    return root.require_group("targets").create_array(
        name,
        shape=(views, *shape),
        dtype=dtype,
        chunks=(1, *shape),
        shards=(shard_views, *shape),
        serializer=BytesCodec(),
        compressors=(Crc32cCodec(),),
        filters=None,
        fill_value=0,
        # Every chunk is stored, even all-zero ones, so a missing chunk always means damage.
        config={"write_empty_chunks": True},
        overwrite=True,
    )


# Every codec's fitted arrays, as <target>_<array>; the group is named for PCA, the first
# codec with state (format 1), and keeps the name so older caches read unchanged.
STATE_GROUP = "pca"


def write_codec_state(root: zarr.Group, states: dict[str, dict]) -> None:
    """``states``: target name -> the codec's fitted arrays by name (torch tensors)."""
    group = root.require_group(STATE_GROUP)
    for name, arrays in states.items():
        for key, values in arrays.items():
            data = values.cpu().numpy().astype(np.float32)
            arr = group.create_array(
                f"{name}_{key}",
                shape=data.shape,
                dtype="float32",
                chunks=data.shape,
                overwrite=True,
            )
            arr[...] = data


def read_codec_state(root: zarr.Group, name: str, keys) -> dict:
    """Target ``name``'s codec's fitted arrays ``keys`` as torch tensors."""
    import torch

    group = child_group(root, STATE_GROUP)
    return {key: torch.from_numpy(read_array(child_array(group, f"{name}_{key}"))) for key in keys}


def load_codec(root: zarr.Group, manifest: Manifest, name: str):
    """Target ``name``'s codec as the manifest describes it, its fitted state loaded."""
    from proteus.common.cache.codec import TargetCodec

    codec = TargetCodec.of(manifest, name)
    if codec.state_keys:
        codec = codec.with_state_arrays(read_codec_state(root, name, codec.state_keys))
    return codec


def shard_bounds(manifest: Manifest, shard: int) -> tuple[int, int]:
    start = shard * manifest.shard_views
    return start, min(start + manifest.shard_views, manifest.counts["views"])


def shard_file(cache: Path, name: str, shard: int, ndim: int) -> Path:
    """The file of one shard of a target array (default chunk-key encoding, "/" separator)."""
    return Path(cache, "targets", name, "c", str(shard), *["0"] * (ndim - 1))


def shard_key(name: str, shard: int, ndim: int) -> str:
    """The same file as an object key relative to the cache's root ("/"-separated)."""
    return shard_file(Path(), name, shard, ndim).as_posix()


def open_tensorstore(cache: Path, name: str):
    """A target array opened read-only with tensorstore (verify, and the alternative reader)."""
    import tensorstore as ts

    spec = {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(Path(cache, "targets", name))},
    }
    return ts.open(spec, read=True, open=True).result()


# The names of the files (object keys, on a store) inside a cache, relative to its root.
ROOT_KEY = "zarr.json"  # the root group; its attributes hold the manifest
SEAL_KEY = f"{PROGRESS_DIR}/seal.json"  # the sealed manifest's digest
_TARGET_SHARD = re.compile(r"^targets/([^/]+)/c/(\d+)(/0)*$")
_MARKER = re.compile(rf"^{PROGRESS_DIR}/shard-(\d+)\.json$")
_SHARD_STATS = re.compile(rf"^{PROGRESS_DIR}/shard-\d+\.stats\.npz$")


def progress_key(shard: int) -> str:
    """Shard ``shard``'s progress marker: written after its target files, it makes it count."""
    return f"{PROGRESS_DIR}/shard-{shard:06d}.json"


def shard_stats_key(shard: int) -> str:
    """Shard ``shard``'s target statistics (merged into the manifest at sealing)."""
    return f"{PROGRESS_DIR}/shard-{shard:06d}.stats.npz"


def seal_path(cache: Path) -> Path:
    return Path(cache) / SEAL_KEY


def progress_path(cache: Path, shard: int) -> Path:
    return Path(cache) / progress_key(shard)


def shard_stats_path(cache: Path, shard: int) -> Path:
    return Path(cache) / shard_stats_key(shard)


def target_shard(key: str) -> tuple[str, int] | None:
    """(array name, shard) of a target shard's key, or None for any other key."""
    match = _TARGET_SHARD.match(key)
    return (match.group(1), int(match.group(2))) if match else None


def is_target_shard(key: str) -> bool:
    return target_shard(key) is not None


def marker_shard(key: str) -> int | None:
    """The shard whose progress marker ``key`` is, or None for any other key."""
    match = _MARKER.match(key)
    return int(match.group(1)) if match else None


def is_marker(key: str) -> bool:
    return marker_shard(key) is not None


def is_shard_stats(key: str) -> bool:
    return _SHARD_STATS.match(key) is not None
