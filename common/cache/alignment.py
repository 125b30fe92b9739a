"""Whether two caches describe the same pixels: same images, same view records, same size.

Two teachers' targets can be trained together only when view id v means the same rendered
input in both caches. ``views_digest`` hashes exactly what decides that; the per-image status
is left out, since a view that failed in one cache is simply not used (see ``usable_views``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from proteus.common.data.table import ImageTable
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.records import ViewTable

_IMAGE_COLUMNS = ("path", "label", "height", "width", "transcode")


def views_digest(images: ImageTable, views: ViewTable, image_size: int) -> str:
    digest = hashlib.sha256(f"size {image_size}\n".encode())
    for name in _IMAGE_COLUMNS:
        column = getattr(images, name)
        data = (
            "\n".join(map(str, column.tolist())).encode()
            if column.dtype.kind in "OUS"
            else (np.ascontiguousarray(column).tobytes())
        )
        digest.update(f"{name} {len(column)}\n".encode() + data)
    for name, column in views.columns().items():
        digest.update(f"{name} {column.shape}\n".encode() + np.ascontiguousarray(column).tobytes())
    return digest.hexdigest()


def check_aligned(caches: Sequence) -> str:
    """The shared views digest of these :class:`Cache` objects, or a ProteusError that says
    what differs between the first and the first cache that does not match it."""
    first = caches[0]
    want = first.views_digest()
    for other in caches[1:]:
        same_kernels = other.manifest.render_revision == first.manifest.render_revision
        if other.views_digest() == want and same_kernels:
            continue
        a, b = first.manifest, other.manifest
        reasons = [
            f"{label}: {getattr(a, key)!r} vs {getattr(b, key)!r}"
            for key, label in (
                ("views_per_image", "views per image"),
                ("seed", "seed"),
                ("policy", "augmentation"),
                ("image_size", "image size"),
            )
            if getattr(a, key) != getattr(b, key)
        ]
        if a.render_revision != b.render_revision:
            reasons.append(
                f"renderer revision {a.render_revision} vs {b.render_revision} (their views' "
                "pixels differ where ColorIncreasing was drawn)"
            )
        if a.dataset.fingerprint != b.dataset.fingerprint:
            reasons.append("the images differ (dataset fingerprints)")
        why = "; ".join(reasons) or "their image or view tables differ"
        raise ProteusError(
            f"--cache {first.name} and --cache {other.name}: not aligned ({why}). Caches "
            f"trained together must describe the same pixels: extract the second with "
            f"`proteus extract --views-from {first.name} ...`"
        )
    return want
