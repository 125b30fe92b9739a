"""What an extraction stores when --views is not given: K views per image by the replay rule
(common/views/replays.py) for the planned --epochs, in float16 when those K
views fit --budget-mb per image, else in the first codec on CODECS that fits, else as many
views as fit in the last one, with the hybrid share that covers the rest named.

An existing cache at --out keeps its own codec (resuming it or growing it must not change it),
and options given explicitly are never replaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from proteus.common.cache.codec import TargetCodec
from proteus.common.cache.manifest import Manifest
from proteus.common.views.replays import MAX_REPLAYS, fresh_needed, views_needed
from proteus.extract.config import ExtractConfig

# Tried in this order once float16 passes the budget: int8 (one float16 scale per token: the
# same students as float16 to three digits, docs/QUALITY.md), then PCA components in float16
# (PCA-64 kept digits' kNN and linear, docs/QUALITY.md; cls and registers stay whole).
CODECS: tuple[tuple[str, int | None], ...] = (
    ("int8", None),
    ("float16", 256),
    ("float16", 128),
    ("float16", 64),
)
WHOLE_TARGETS = ("cls", "registers")  # small: never compressed by PCA


@dataclass(frozen=True)
class StoragePlan:
    views: int
    dtype: str
    pca: int | None
    note: str | None = None  # one line for the user when the plan chose something


def view_bytes(targets: dict[str, list[int]], dtype: str, pca: int | None) -> int:
    """Stored bytes of one view's targets with this codec (per-cache PCA bases excluded)."""
    total = 0
    for name, shape in targets.items():
        k = pca if name not in WHOLE_TARGETS else None
        for per_view, kind in TargetCodec(name, tuple(shape), dtype, k).arrays().values():
            total += math.prod(per_view) * np.dtype(kind).itemsize
    return total


def plan_storage(
    cfg: ExtractConfig, targets: dict[str, list[int]], existing: Manifest | None
) -> StoragePlan:
    """K, dtype and PCA for this extraction (targets: name -> per-view shape)."""
    dtype, pca = cfg.dtype, cfg.pca
    if existing is not None and dtype is None and pca is None:
        encoding = existing.encoding.get("patch")
        dtype, pca = existing.dtype, encoding.pca_k if encoding else None
    if cfg.views is not None:
        return StoragePlan(cfg.views, dtype or "float16", pca)
    wanted = views_needed(cfg.epochs)
    rule = (
        f"--epochs {cfg.epochs}: {wanted} views per image keep every view within "
        f"{MAX_REPLAYS} replays (docs/QUALITY.md 'Long schedules')"
    )
    budget = cfg.budget_mb * 1e6
    if dtype is not None or pca is not None:  # the codec is the user's: K is the rule's
        return StoragePlan(wanted, dtype or "float16", pca, f"{rule}: recording --views {wanted}")
    # PCA only where it stores fewer values than a token has (tiny teachers: never).
    width = min(shape[-1] for name, shape in targets.items() if name not in WHOLE_TARGETS)
    choices = [("float16", None), *((kind, k) for kind, k in CODECS if k is None or k < width)]
    for kind, k in choices:
        if wanted * view_bytes(targets, kind, k) <= budget:
            if kind == "float16" and k is None:
                return StoragePlan(wanted, kind, None, f"{rule}: recording --views {wanted}")
            return StoragePlan(
                wanted,
                kind,
                k,
                f"{rule}: recording --views {wanted} {_codec_flags(kind, k)}, which keeps "
                f"them within --budget-mb {cfg.budget_mb:g} per image",
            )
    kind, k = choices[-1]
    fits = max(1, int(budget // view_bytes(targets, kind, k)))
    share = fresh_needed(cfg.epochs, fits)
    return StoragePlan(
        fits,
        kind,
        k,
        f"{rule}, more than --budget-mb {cfg.budget_mb:g} per image holds even "
        f"with {_codec_flags(kind, k)}: recording --views {fits} {_codec_flags(kind, k)}; "
        "train with "
        f"--online-fraction {share:g} (fresh views from the teacher) to stay within the rule, "
        "or raise --budget-mb",
    )


def planned(cfg: ExtractConfig, plan: StoragePlan) -> ExtractConfig:
    return replace(cfg, views=plan.views, dtype=plan.dtype, pca=plan.pca)


def _codec_flags(kind: str, k: int | None) -> str:
    if k is None:
        return f"--dtype {kind}"
    return f"--pca {k}" + ("" if kind == "float16" else f" --dtype {kind}")
