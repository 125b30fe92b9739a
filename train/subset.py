"""Training on part of a cache without re-extracting: fewer classes, fewer images per class,
or a fraction of the images (the Proteus proxy-data ablations). Seeded, so a subset is
reproducible and recorded in the run's config."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proteus.common.runtime.errors import ProteusError


@dataclass(frozen=True)
class Subset:
    classes: int | None = None  # keep this many classes (a seeded choice)
    per_class: int | None = None  # keep at most this many images of each class
    fraction: float | None = None  # then keep this share of the images

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.classes, self.per_class, self.fraction))


def select_images(labels: np.ndarray, subset: Subset, seed: int) -> tuple[np.ndarray, dict]:
    """Rows of ``labels`` (one per usable image) to train on, and what was chosen."""
    rows = np.arange(len(labels))
    info: dict = {}
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5B]))
    if (subset.classes or subset.per_class) and (labels < 0).any():
        raise ProteusError(
            "--subset-classes/--subset-per-class need labels; this cache's images have none "
            "(extract from an ImageFolder tree or a labelled list)"
        )
    if subset.classes is not None:
        present = np.unique(labels)
        if not 0 < subset.classes <= len(present):
            raise ProteusError(
                f"--subset-classes {subset.classes}: the cache has {len(present)} classes"
            )
        kept = np.sort(rng.choice(present, subset.classes, replace=False))
        rows = rows[np.isin(labels[rows], kept)]
        info["classes"] = kept.tolist()
    if subset.per_class is not None:
        if subset.per_class < 1:
            raise ProteusError("--subset-per-class must be at least 1")
        chosen = [
            np.sort(rng.permutation(group)[: subset.per_class])
            for group in (rows[labels[rows] == c] for c in np.unique(labels[rows]))
        ]
        rows = np.sort(np.concatenate(chosen))
    if subset.fraction is not None:
        if not 0 < subset.fraction <= 1:
            raise ProteusError(f"--subset-fraction {subset.fraction}: must be in (0, 1]")
        count = max(1, round(len(rows) * subset.fraction))
        rows = np.sort(rng.choice(rows, count, replace=False))
    info["images"] = len(rows)
    return rows, info
