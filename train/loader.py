"""Training inputs: the recorded views rendered again, and the cached targets of those views.

With several aligned caches (one per teacher) the views are rendered once, from the first
cache's image table, and each cache gives its own targets for the same view ids.

A background thread prepares step s+1 (file reads, DALI rendering, target reads) while the
model runs step s.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from proteus.common.cache.reader import Cache
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.prefetch import prefetch
from proteus.common.views.renderer import Renderer, RenderError
from proteus.train.sampler import ViewSampler


@dataclass
class TrainBatch:
    step: int
    view_ids: np.ndarray  # (B,)
    images: torch.Tensor  # (B, 3, S, S) float32, on the renderer's device
    targets: list[dict[str, dict[str, np.ndarray]]]  # per cache: name -> stored arrays
    n_masked: int
    masks: np.ndarray  # (n_masked, N_student) bool


class TrainBatches:
    """``caches`` and ``target_names`` pair up: the arrays each cache is read for."""

    # A remote cache fetches the shards of the next steps while this one is read (already
    # present or pending shards are skipped, so asking again each step costs little).
    FETCH_AHEAD = range(1, 5)

    def __init__(
        self,
        caches: list[Cache],
        sampler: ViewSampler,
        renderer: Renderer,
        target_names: list[tuple[str, ...]],
        rank: int,
    ):
        self.caches = caches
        self.cache = caches[0]  # the one whose image table and files are rendered
        self.sampler = sampler
        self.renderer = renderer
        self.target_names = target_names
        self.rank = rank
        self._io = ThreadPoolExecutor(8, thread_name_prefix="proteus-read")

    def decode(
        self, batch: TrainBatch, name: str, device: torch.device, teacher: int = 0
    ) -> torch.Tensor:
        """A target as float32 on ``device``: stored bytes travel, decoding happens there."""
        cache = self.caches[teacher]
        stored = {
            k: torch.from_numpy(v).to(device, non_blocking=True)
            for k, v in batch.targets[teacher][name].items()
        }
        return cache.codec(name).to(device).decode(stored)

    def targets(self, batch: TrainBatch, device: torch.device) -> list[dict[str, torch.Tensor]]:
        """Per cache: its targets by name, decoded to float on ``device``."""
        return [
            {name: self.decode(batch, name, device, index) for name in own}
            for index, own in enumerate(batch.targets)
        ]

    def batch(self, step: int) -> TrainBatch:
        plan = self.sampler.plan(step, self.rank)
        pairs = list(zip(self.caches, self.target_names, strict=True))
        if any(cache.mirror is not None for cache in self.caches):
            # Asked for before this step's rendering, so the fetches run while it renders.
            ahead = [self.sampler.rank_views(step + k, self.rank) for k in self.FETCH_AHEAD]
            ids = np.concatenate([a for a in ahead if a is not None] or [np.empty(0, np.int64)])
            for cache, names in pairs:
                cache.prefetch(names, ids)
        views = self.cache.views[plan.view_ids]
        encoded = list(self._io.map(self._load, views.image.tolist()))
        try:
            images = self.renderer.render(encoded, views)
        except RenderError as exc:
            raise ProteusError(
                f"step {step}: rendering failed ({exc}); an image changed since extraction "
                f"under {self.cache.data_root} (`proteus cache verify` and the dataset "
                "fingerprint tell which)"
            ) from exc
        if plan.view_ids is None:  # the sampler plans views whenever the cache has them
            raise ProteusError(f"step {step}: no recorded views planned for a cached run")
        targets = [
            {name: cache.read_stored(name, plan.view_ids) for name in names}
            for cache, names in pairs
        ]
        return TrainBatch(step, plan.view_ids, images, targets, plan.n_masked, plan.masks)

    def iterate(self, start: int, stop: int) -> Iterator[TrainBatch]:
        return prefetch((self.batch(step) for step in range(start, stop)), depth=2)

    def _load(self, image: int) -> np.ndarray:
        try:
            return self.cache.encoded(image)
        except OSError as exc:
            path = self.cache.image_path(image)
            raise ProteusError(
                f"{path}: cannot read an image the cache was extracted from ({exc.strerror}); "
                "pass --data with the folder the images live in now"
            ) from exc
