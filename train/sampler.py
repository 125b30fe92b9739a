"""Which views each step trains on, and which patches it masks: pure functions of the step.

Nothing here has state, so resuming at step s needs only s, and every rank computes its own
share without communication.

Epoch e visits the cache's usable images in a seeded order and uses view
``(offset_i + e) mod K`` of image i (``offset_i`` seeded per image), so K epochs cycle through
all K views. Global batches are consecutive slices of that order (an incomplete last one is
dropped). Within a global batch of G = B·W samples the first W·n are the masked ones
(n = ⌊B·mask_probability⌋), and rank r takes masked samples [r·n, (r+1)·n) followed by unmasked
samples [W·n + r·(B−n), …). Every rank thus masks the first n of its own batch, as Proteus
does per GPU, and the union over ranks is exactly the one-process batch, so a W-process run
computes the same global loss as one process with batch G.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proteus.common.errors import ProteusError


@dataclass(frozen=True)
class StepPlan:
    view_ids: np.ndarray  # (B,) view ids for this rank, masked samples first
    n_masked: int  # the first n_masked samples get a patch mask
    masks: np.ndarray  # (n_masked, N) bool


class ViewSampler:
    def __init__(
        self,
        image_views: np.ndarray,
        seed: int,
        batch_size: int,
        world: int,
        mask_probability: float,
        mask_ratio: float,
        num_patches: int,
    ):
        """``image_views``: (I, K) view ids of each usable image, view index order."""
        self.image_views = np.asarray(image_views)
        self.seed = seed
        self.batch = batch_size
        self.world = world
        self.global_batch = batch_size * world
        self.n_masked = int(batch_size * mask_probability)
        self.num_patches = num_patches
        self.masked_patches = round(num_patches * mask_ratio)
        images, k = self.image_views.shape
        if images < self.global_batch:
            raise ProteusError(
                f"--batch-size {batch_size} × {world} process(es) = {self.global_batch} is more "
                f"than the cache's {images} usable images; lower --batch-size"
            )
        self.steps_per_epoch = images // self.global_batch
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
        self._offsets = rng.integers(0, k, size=images)

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def global_views(self, step: int) -> np.ndarray:
        """The step's whole global batch, in order (for tests and single-process checks)."""
        epoch, index = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng(np.random.SeedSequence([self.seed, 1, epoch])).permutation(
            len(self.image_views)
        )
        chosen = order[index * self.global_batch : (index + 1) * self.global_batch]
        k = self.image_views.shape[1]
        return self.image_views[chosen, (self._offsets[chosen] + epoch) % k]

    def plan(self, step: int, rank: int) -> StepPlan:
        views = self.global_views(step)
        n, w = self.n_masked, self.world
        unmasked = self.batch - n
        mine = np.concatenate(
            [
                np.arange(rank * n, (rank + 1) * n),
                np.arange(w * n + rank * unmasked, w * n + (rank + 1) * unmasked),
            ]
        )
        masks = np.stack([self._mask(step, int(j)) for j in mine[:n]]) if n else None
        if masks is None:
            masks = np.zeros((0, self.num_patches), bool)
        return StepPlan(views[mine], n, masks)

    def _mask(self, step: int, position: int) -> np.ndarray:
        # Seeded by the sample's position in the global batch: the same on any rank split.
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2, step, position]))
        mask = np.zeros(self.num_patches, bool)
        mask[rng.choice(self.num_patches, self.masked_patches, replace=False)] = True
        return mask
