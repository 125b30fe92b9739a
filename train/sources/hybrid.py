"""A cache with fresh views on demand (--online-fraction p): a seeded share p of every
batch is scored by the teacher in the loop on views the cache never recorded, the rest is
read from the cache.

A long schedule replays each of a cache's K views epochs / K times; fresh views keep some of
every batch new at a fraction of online training's teacher compute. A fresh sample of image
i at its u-th use is view K + u of i: the next view records the cache does not hold (the
very views growing the cache to K' > K would record, drawn by the cache's policy, seed and
renderer revision), so a resumed run draws the same ones. Which positions of a global batch
are fresh is the sampler's choice (seeded by the step, the same on any rank split).

The teacher must be the cache's: the same weights (sha256), input size and normalisation,
so a fresh target is what extraction would have stored for that view.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from proteus.common.cache.stats import TargetStats
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.records import ViewTable, view_records
from proteus.train.sources.base import ProbeSet, Rows, Samples, TargetSource
from proteus.train.sources.cache import CacheSource
from proteus.train.sources.loop import LoopTeacher


class HybridSource(TargetSource):
    """A :class:`CacheSource` and its teacher: the cache's rows, records and statistics;
    the teacher's targets for the fresh samples."""

    kind = "cache"

    def __init__(self, cached: CacheSource, teacher: LoopTeacher):
        self.cached, self.teacher = cached, teacher
        self.name = cached.name
        self.info = cached.info
        m = cached.cache.manifest
        self.recorded = m.views_per_image  # fresh views start after the recorded ones
        self._check_teacher()

    def _check_teacher(self) -> None:
        info, spec = self.info, self.teacher.teacher.spec
        differs = []
        if self.teacher.weights_sha256 != info.weights_sha256:
            differs.append(
                f"weights sha256 {self.teacher.weights_sha256[:12]}… against the cache's "
                f"{info.weights_sha256[:12]}…"
            )
        if self.teacher.image_size != info.image_size:
            differs.append(f"input {self.teacher.image_size} px against {info.image_size}")
        if tuple(spec.mean) != tuple(info.mean) or tuple(spec.std) != tuple(info.std):
            differs.append("another input normalisation")
        missing = sorted(set(info.targets) - set(self.teacher.shapes()))
        if missing:
            differs.append(f"no {', '.join(missing)} targets")
        if differs:
            raise ProteusError(
                f"--teacher {self.teacher.name}: not the teacher of --cache {self.name} "
                f"({'; '.join(differs)}); pass the teacher and --weights it was extracted "
                f"with (`proteus cache info {self.name}` shows them)"
            )

    @property
    def option(self) -> str:
        return self.cached.option

    def rows(self, views: int | None) -> Rows:
        return self.cached.rows(views)

    def check(self, names: tuple[str, ...]) -> None:
        self.cached.check(names)

    def statistics(self, names: tuple[str, ...]) -> TargetStats:
        return self.cached.statistics(names)

    def views(self, samples: Samples) -> ViewTable:
        fresh = _fresh(samples)
        if not fresh.any():
            return self.cached.views(samples)
        order = np.concatenate([np.flatnonzero(~fresh), np.flatnonzero(fresh)])
        parts = [self.cached.views(_take(samples, ~fresh)), self._fresh_views(samples, fresh)]
        return ViewTable.concat(parts)[np.argsort(order)]

    def _fresh_views(self, samples: Samples, fresh: np.ndarray) -> ViewTable:
        images = samples.images[fresh]
        table = self.cached.cache.images
        sizes = np.stack([table.height[images], table.width[images]], 1)
        info = self.info
        views = self.recorded + samples.uses[fresh]
        return view_records(info.policy, info.seed, images, views, sizes, info.image_size)

    def encoded(self, image: int) -> np.ndarray:
        return self.cached.encoded(image)

    def fetch(self, names: tuple[str, ...], samples: Samples) -> object:
        fresh = _fresh(samples)
        return fresh, names, self.cached.fetch(names, _take(samples, ~fresh))

    def targets(
        self, fetched: object, pixels: torch.Tensor, device: torch.device
    ) -> dict[str, torch.Tensor]:
        assert isinstance(fetched, tuple)
        fresh, names, stored = fetched
        read = self.cached.targets(stored, pixels[torch.from_numpy(~fresh)], device)
        if not fresh.any():
            return read
        scored = self.teacher.forward(pixels[torch.from_numpy(fresh)].to(device))
        where = torch.from_numpy(fresh).to(device)
        out = {}
        for name in names:
            both = torch.empty((len(fresh), *read[name].shape[1:]), device=device)
            both[~where], both[where] = read[name], scored[name].to(device)
            out[name] = both
        return out

    def probe_sets(self, rows: Rows, count: int, seed: int) -> tuple[list[ProbeSet], list[str]]:
        return self.cached.probe_sets(rows, count, seed)

    def render_failed(self, step: int, reason: str) -> ProteusError:
        return self.cached.render_failed(step, reason)

    @property
    def remote(self) -> bool:
        return self.cached.remote

    def prefetch(self, names: tuple[str, ...], view_ids: np.ndarray) -> None:
        self.cached.prefetch(names, view_ids)

    def close(self) -> None:
        self.cached.close()


def _fresh(samples: Samples) -> np.ndarray:
    if samples.fresh is None:
        return np.zeros(len(samples), bool)
    return np.asarray(samples.fresh, bool)


def _take(samples: Samples, keep: np.ndarray) -> Samples:
    return replace(
        samples,
        images=samples.images[keep],
        uses=samples.uses[keep],
        view_ids=None if samples.view_ids is None else samples.view_ids[keep],
        fresh=None,
    )
