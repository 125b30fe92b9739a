"""Training inputs: each step's views rendered once, and every source's targets for them.

With several aligned caches (one per teacher) the views are rendered once, from the first
source's records, and each source gives its own targets for the same samples. A background
thread prepares step s+1 (file reads, DALI rendering, target reads) while the model runs
step s; a teacher in the loop runs in the step itself, on the rendered pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from proteus.common.runtime.prefetch import prefetch
from proteus.common.views.renderer import Renderer, RenderError
from proteus.train.feed import DeviceFeed, Staged
from proteus.train.sampler import ViewSampler
from proteus.train.sources import Rows, Samples, TargetSource


@dataclass
class TrainBatch:
    step: int
    images: torch.Tensor  # (B, 3, S, S) float32, on the renderer's device
    fetched: list[object]  # per source: what it read ahead for its targets
    n_masked: int
    masks: dict[int, np.ndarray]  # per student patch count N: (n_masked, N) bool
    view_ids: np.ndarray | None  # (B,) recorded view ids; None for a teacher in the loop
    staged: Staged | None = None  # on a GPU: its copies in flight (train/feed.py)

    def masks_for(self, num_patches: int) -> np.ndarray:
        """The masks of a student with ``num_patches`` tokens."""
        return self.masks[num_patches]


class Batches:
    """``sources`` and ``target_names`` pair up: the targets each source is asked for."""

    # A remote cache fetches the shards of the next steps while this one is read (already
    # present or pending shards are skipped, so asking again each step costs little).
    FETCH_AHEAD = range(1, 5)

    def __init__(
        self,
        sources: Sequence[TargetSource],
        rows: Rows,
        sampler: ViewSampler,
        renderer: Renderer,
        target_names: Sequence[tuple[str, ...]],
        rank: int,
        patch_counts: Sequence[int] = (),
        feed: DeviceFeed | None = None,
    ):
        """``patch_counts``: the token counts of the students fed (several students trained
        together may have other grids); each gets masks of its own, the sampler's first."""
        self.sources = list(sources)
        self.rows = rows
        self.sampler = sampler
        self.renderer = renderer
        self.pairs = list(zip(self.sources, target_names, strict=True))
        self.rank = rank
        self.feed = feed
        self.patch_counts = tuple(dict.fromkeys((sampler.num_patches, *patch_counts)))
        self._io = ThreadPoolExecutor(8, thread_name_prefix="proteus-read")

    def batch(self, step: int) -> TrainBatch:
        plan = self.sampler.plan(step, self.rank)
        if any(source.remote for source in self.sources):
            # Asked for before this step's rendering, so the fetches run while it renders.
            ahead = [self.sampler.rank_views(step + k, self.rank) for k in self.FETCH_AHEAD]
            ids = np.concatenate([a for a in ahead if a is not None] or [np.empty(0, np.int64)])
            for source, names in self.pairs:
                source.prefetch(names, ids)
        samples = Samples(self.rows.images[plan.rows], plan.uses, plan.view_ids, plan.fresh)
        first = self.sources[0]  # whose records are rendered
        views = first.views(samples)
        encoded = list(self._io.map(first.encoded, views.image.tolist()))
        try:
            images = self.renderer.render(encoded, views)
        except RenderError as exc:
            raise first.render_failed(step, str(exc)) from exc
        fetched = [source.fetch(names, samples) for source, names in self.pairs]
        masks = {n: self.sampler.masks(step, self.rank, n) for n in self.patch_counts[1:]}
        masks[self.sampler.num_patches] = plan.masks
        batch = TrainBatch(step, images, fetched, plan.n_masked, masks, plan.view_ids)
        return batch if self.feed is None else self.feed.stage(batch, self.sources)

    def iterate(self, start: int, stop: int) -> Iterator[TrainBatch]:
        return prefetch((self.batch(step) for step in range(start, stop)), depth=2)

    def targets(self, batch: TrainBatch, device: torch.device) -> list[dict[str, torch.Tensor]]:
        """Per source: its targets by name, float32 on ``device``."""
        return [
            source.targets(fetched, batch.images, device)
            for source, fetched in zip(self.sources, batch.fetched, strict=True)
        ]
