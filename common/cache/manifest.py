"""The cache manifest: everything needed to trust, replay and refuse a cache.

It lives in the root group's attributes (``zarr.json`` → ``attributes.proteus``), so any Zarr
v3 reader sees it. ``identity()`` is the part a resumed extraction must match exactly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from proteus.common.data.dataset import ImageList
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.records import HOLDOUT_VIEW

FORMAT_VERSION = 1
MANIFEST_KEY = "proteus"

CREATING, WRITING, SEALED = "creating", "writing", "sealed"
# A sealed cache being given more views (extract --views K' > K): its tables and arrays are
# being laid out anew; a re-run does that again, then the new shards are written ("writing").
GROWING = "growing"


@dataclass(frozen=True)
class _Part:
    """A typed part of the manifest. Keys this proteus does not know are kept in ``extra``
    and written back, so a part writes exactly what it read (the seal digest covers it)."""

    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
        return cls(**known, extra={k: v for k, v in data.items() if k not in names})

    def to_json(self) -> dict[str, Any]:
        out = {
            f.name: _plain(getattr(self, f.name))
            for f in fields(self)
            if f.name != "extra" and not (f.name in self.OPTIONAL and getattr(self, f.name) is None)
        }
        return out | self.extra

    OPTIONAL: ClassVar[tuple[str, ...]] = ()  # written only when set (older caches lack them)


@dataclass(frozen=True)
class DatasetRecord(_Part):
    """What the images were: kind (folder, list, tars), root as given, fingerprint (path,
    label and size of every image), class names."""

    kind: str
    root: str
    fingerprint: str
    classes: tuple[str, ...] = ()

    @classmethod
    def of(cls, images: ImageList) -> DatasetRecord:
        return cls(images.kind, images.recorded_root(), images.fingerprint(), tuple(images.classes))


@dataclass(frozen=True)
class RendererRecord(_Part):
    """What rendered the views: a different DALI may resample differently, and ``revision``
    names which version of proteus's operations a cache's pixels came from."""

    name: str = "dali"
    dali_version: str | None = None
    device: str | None = None  # cpu | gpu
    revision: int | None = None  # None: a cache from before revisions were recorded (1)

    OPTIONAL: ClassVar[tuple[str, ...]] = ("dali_version", "device", "revision")


@dataclass(frozen=True)
class Encoding(_Part):
    """How one target is stored (common/cache/codec.py): float16 | float32 | int8 (a scale per
    token), optionally as ``pca_k`` principal-component coefficients."""

    kind: str
    pca_k: int | None = None


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass
class Manifest:
    format_version: int
    state: str  # creating (tables being laid out) | writing (targets) | sealed (read-only)
    proteus_version: str
    # Teacher: what produced the targets.
    teacher: str  # registry name or timm:<model>
    teacher_family: str  # dinov2 | dinov3 | clip | siglip2 | … | timm | effnet
    weights_source: str  # hub id, file:<path> or random-init
    weights_sha256: str  # over the teacher's state dict (names, dtypes, shapes, bytes)
    embed_dim: int
    patch_size: int
    grid: tuple[int, int]  # teacher patch grid (rows, cols)
    layers: tuple[int, ...]  # intermediate blocks stored as targets/layer_<i>
    # Pixels: how views are rendered, by both stages.
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    renderer: RendererRecord
    policy: dict[str, Any]  # AugPolicy.to_dict()
    seed: int
    views_per_image: int
    precision: str  # teacher compute: float32, or bfloat16 autocast
    # Storage.
    targets: dict[str, list[int]]  # array name -> per-view shape
    dtype: str  # float16 | float32
    codec: str  # how each view's chunk is encoded
    shard_views: int  # views per shard file: the unit of writing, resuming and rank split
    # Data.
    dataset: DatasetRecord
    counts: dict[str, int] = field(default_factory=dict)  # images, usable, skipped, views, …
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {image, path, reason}
    extract: dict[str, Any] = field(default_factory=dict)  # device, precision, batch size
    # How each target is stored (TargetCodec).
    encoding: dict[str, Encoding] = field(default_factory=dict)
    # The stored arrays under targets/: name -> {"shape": per-view shape, "dtype": …}
    arrays: dict[str, dict[str, Any]] = field(default_factory=dict)
    # PCA-coded targets: name -> {"k", "variance_kept", "sample_views"}
    pca: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Extracted with --views-from: {"cache", "manifest_sha256", "views_sha256"} of the source.
    views_from: dict[str, Any] = field(default_factory=dict)
    # Per-channel statistics of each target over the usable views, in teacher units
    # (common/cache/stats.py): name -> {"mean": [D], "std": [D], "tokens": n}. Set at sealing.
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The named view policy the views were drawn from (--aug-preset; --aug may have changed
    # single values of it: `policy` is what was drawn). None: recorded before presets.
    aug_preset: str | None = None
    # How the view table is laid out: [first view index, count] blocks of every image's
    # views in turn (views/records.py: layout_views). Empty: one block of K training views.
    segments: list[list[int]] = field(default_factory=list)
    # What was held out of training (extract --holdout-views N --holdout-images M):
    # {"views": N, "images": M}; empty: nothing.
    holdout: dict[str, int] = field(default_factory=dict)
    # The M images (table rows) whose views training never samples, chosen (seeded) among
    # the usable ones when the cache was laid out.
    holdout_images: list[int] = field(default_factory=list)
    # Earlier states of a grown cache, oldest first: {views_per_image, views, manifest_sha256}.
    grown_from: list[dict[str, Any]] = field(default_factory=list)

    # What must be equal for a re-run to resume this cache instead of being refused.
    IDENTITY = (
        "format_version",
        "teacher",
        "weights_sha256",
        "image_size",
        "layers",
        "policy",
        "seed",
        "views_per_image",
        "precision",
        "dtype",
        "encoding",
        "shard_views",
        "mean",
        "std",
        "holdout",
    )

    def identity(self) -> dict[str, Any]:
        data = self.to_dict()
        return {key: data[key] for key in self.IDENTITY} | {
            "dataset_fingerprint": self.dataset.fingerprint,
            "views_from": self.views_from.get("views_sha256"),
        }

    @property
    def view_segments(self) -> list[list[int]]:
        """The view table's blocks: [first view index, count], every image's views in turn."""
        return self.segments or [[0, self.views_per_image]]

    @property
    def holdout_views(self) -> int:
        """Held-out views per image (extract --holdout-views): never trained on."""
        return sum(count for start, count in self.view_segments if start >= HOLDOUT_VIEW)

    @property
    def training_segments(self) -> list[list[int]]:
        return [[s, c] for s, c in self.view_segments if s < HOLDOUT_VIEW]

    @property
    def render_revision(self) -> int:
        """Which renderer kernels drew its views (renderer.REVISIONS); caches from before
        revisions were recorded are revision 1."""
        return self.renderer.revision or 1

    @property
    def grown_at(self) -> int:
        """The first view id its last growth added (0: never grown): rows below it were
        written before, and growing carries their stored bytes unchanged."""
        return int(self.grown_from[-1]["views"]) if self.grown_from else 0

    @property
    def num_shards(self) -> int:
        views = self.counts["views"]
        return -(-views // self.shard_views)

    def digest(self) -> str:
        """sha256 of the canonical JSON; recorded at sealing to notice later hand edits."""
        data = self.to_dict()
        # Fields added after caches were sealed without them: absent, their digest stands.
        for key, absent in _ADDED_LATER.items():
            if data[key] == absent:
                del data[key]
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, _Part):
                value = value.to_json()
            elif f.name == "encoding":
                value = {name: e.to_json() for name, e in value.items()}
            data[f.name] = value
        # JSON round trip turns tuples into lists, so comparisons see one form.
        return json.loads(json.dumps(data))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Path | str = "cache") -> Manifest:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            newer = isinstance(version, int) and version > FORMAT_VERSION
            raise ProteusError(
                f"{where}: cache format version {version}, this proteus reads version "
                f"{FORMAT_VERSION}"
                + ("; upgrade proteus to read it" if newer else "; re-extract it with this one")
            )
        names = {f.name for f in fields(cls)}
        missing = names - set(data) - {"counts", "skipped", "extract", "views_from", *_ADDED_LATER}
        if missing:
            raise ProteusError(
                f"{where}: manifest lacks {', '.join(sorted(missing))}; it was edited or is "
                "not a proteus cache (`proteus cache verify` checks the rest)"
            )
        kwargs = {k: v for k, v in data.items() if k in names}
        for key in ("grid", "layers", "mean", "std"):
            kwargs[key] = tuple(kwargs[key])
        kwargs["dataset"] = DatasetRecord.from_json(kwargs["dataset"])
        kwargs["renderer"] = RendererRecord.from_json(kwargs["renderer"])
        kwargs["encoding"] = {n: Encoding.from_json(e) for n, e in kwargs["encoding"].items()}
        return cls(**kwargs)


# Manifest fields later proteus versions added, with the value that means "absent": a cache
# sealed before one existed digests without it.
_ADDED_LATER: dict[str, Any] = {
    "stats": {},
    "aug_preset": None,
    "segments": [],
    "holdout": {},
    "holdout_images": [],
    "grown_from": [],
}


def teacher_fields(teacher, weights_sha256: str) -> dict[str, Any]:
    """What the manifest records of a built :class:`Teacher` (extraction writes it; online
    training's stand-in manifest carries the same)."""
    spec = teacher.spec
    return {
        "teacher_family": spec.family,
        "weights_source": teacher.weights_source,
        "weights_sha256": weights_sha256,
        "embed_dim": spec.embed_dim,
        "patch_size": spec.patch_size,
        "grid": teacher.grid,
        "layers": teacher.layers,
        "image_size": teacher.image_size,
        "mean": spec.mean,
        "std": spec.std,
    }


def describe_mismatch(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``key: cached → requested`` for every differing identity key."""
    parts = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            parts.append(f"{key}: cache has {_brief(old.get(key))}, asked {_brief(new.get(key))}")
    return "; ".join(parts)


def _brief(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."
