"""Targets from a sealed cache: the recorded views rendered again, their stored targets read
in the loader's thread and decoded on the training device."""

from __future__ import annotations

import numpy as np
import torch

from proteus.common.cache.reader import Cache
from proteus.common.cache.stats import TargetStats
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.records import HOLDOUT_VIEW, AugPolicy, ViewTable
from proteus.train.sources.base import (
    ProbeSet,
    Rows,
    Samples,
    TargetSource,
    TeacherInfo,
    pick,
)


class CacheSource(TargetSource):
    kind = "cache"

    def __init__(self, cache: Cache):
        self.cache = cache
        self.name = cache.name
        m = cache.manifest
        self.info = TeacherInfo(
            name=m.teacher,
            family=m.teacher_family,
            dim=m.embed_dim,
            grid=(int(m.grid[0]), int(m.grid[1])),
            image_size=m.image_size,
            mean=m.mean,
            std=m.std,
            weights_sha256=m.weights_sha256,
            targets={name: tuple(shape) for name, shape in m.targets.items()},
            policy=AugPolicy.from_dict(m.policy),
            seed=m.seed,
            render_revision=m.render_revision,
            digest=m.digest(),
            grown_from=tuple(g["manifest_sha256"] for g in m.grown_from),
        )

    def rows(self, views: int | None) -> Rows:
        """Each training image's recorded training views in view order: held-out views and
        held-out images are the gauge's, never sampled."""
        m = self.cache.manifest
        k, table = m.views_per_image, self.cache.views
        ids = self.cache.usable_views()
        ids = ids[(table.view[ids] < HOLDOUT_VIEW) & ~np.isin(table.image[ids], m.holdout_images)]
        # Grown caches hold an image's views in several blocks: order them by image, then view.
        ids = ids[np.lexsort((table.view[ids], table.image[ids]))]
        usable = ids.reshape(-1, k)
        if views is not None:
            if not 0 < views <= k:
                raise ProteusError(
                    f"--views {views}: the cache holds {k} views per image; pick 1 to that"
                )
            usable = usable[:, :views]
        images = self.cache.views.image[usable[:, 0]].astype(np.int64)
        return Rows(images, usable, self.cache.images.label[images])

    def check(self, names: tuple[str, ...]) -> None:
        super().check(names)
        self.cache.check_shards(names)

    def statistics(self, names: tuple[str, ...]) -> TargetStats:
        return TargetStats.from_manifest(self.cache.manifest.stats, names, f"--cache {self.name}")

    def views(self, samples: Samples) -> ViewTable:
        return self.cache.views[_planned(samples.view_ids)]

    def encoded(self, image: int) -> np.ndarray:
        try:
            return self.cache.encoded(image)
        except OSError as exc:
            raise ProteusError(
                f"{self.cache.image_path(image)}: cannot read an image the cache was extracted "
                f"from ({exc.strerror}); pass --data with the folder the images live in now"
            ) from exc

    def fetch(self, names: tuple[str, ...], samples: Samples) -> dict:
        """The stored (undecoded) arrays of each target: bytes travel, decoding happens on
        the training device."""
        ids = _planned(samples.view_ids)
        return {name: self.cache.read_stored(name, ids) for name in names}

    def probe_sets(self, rows: Rows, count: int, seed: int) -> tuple[list[ProbeSet], list[str]]:
        """Views it trains on, its held-out views of training images, and the training views
        of its held-out images: what extraction recorded (--holdout-views, --holdout-images)."""
        m, table = self.cache.manifest, self.cache.views
        usable = self.cache.usable_views()
        held_images = np.isin(table.image[usable], m.holdout_images)
        held_views = table.view[usable] >= HOLDOUT_VIEW
        candidates = {
            "trained_views": rows.view_ids.reshape(-1),
            "heldout_views": usable[held_views & ~held_images],
            "heldout_images": usable[~held_views & held_images],
        }
        sets, missing = [], []
        for name, ids in candidates.items():
            if not len(ids):
                missing.append(name)
                continue
            chosen = pick(ids, count, seed, local=self.remote)
            sets.append(
                ProbeSet(
                    name, Samples(table.image[chosen], table.view[chosen].astype(np.int64), chosen)
                )
            )
        notes = []
        if "heldout_views" in missing and "heldout_images" in missing:
            notes.append(
                f"{self.option}: no held-out views in this cache (extract --holdout-views N "
                "records them); the gauge scores views the student trains on only"
            )
        return sets, notes

    def targets(
        self, fetched: object, pixels: torch.Tensor, device: torch.device
    ) -> dict[str, torch.Tensor]:
        assert isinstance(fetched, dict)
        return {name: self.decode(name, stored, device) for name, stored in fetched.items()}

    def decode(self, name: str, stored: dict, device: torch.device):
        # numpy arrays, or tensors already copied to the device (train/feed.py)
        arrays = {k: torch.as_tensor(v).to(device, non_blocking=True) for k, v in stored.items()}
        codec = self.cache.codec(name).to(device)
        if name in self.coefficients:
            return codec.decode_coefficients(arrays)
        return codec.decode(arrays)

    def pca_codecs(self, names: tuple[str, ...]) -> dict:
        codecs = {name: self.cache.codec(name) for name in names}
        return {name: codec for name, codec in codecs.items() if codec.pca_k}

    def render_failed(self, step: int, reason: str) -> ProteusError:
        return ProteusError(
            f"step {step}: rendering failed ({reason}); an image changed since extraction "
            f"under {self.cache.data_root} (`proteus cache verify` and the dataset "
            "fingerprint tell which)"
        )

    @property
    def remote(self) -> bool:
        return self.cache.mirror is not None

    def prefetch(self, names: tuple[str, ...], view_ids: np.ndarray) -> None:
        self.cache.prefetch(names, view_ids)

    def close(self) -> None:
        self.cache.close()


def _planned(view_ids: np.ndarray | None) -> np.ndarray:
    # The sampler plans recorded views whenever its rows have them, and a cache's always do.
    if view_ids is None:
        raise ValueError("a cached step was planned without recorded views")
    return view_ids
