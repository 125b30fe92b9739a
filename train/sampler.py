"""Which views each step trains on, and which patches it masks: pure functions of the step.

Nothing here has state, so resuming at step s needs only s, and every rank computes its own
share without communication.

**Epochs and repeated augmentation.** With ``repeats`` r = 1 an epoch visits every usable
image once, in a seeded order. With r > 1 (DeiT's RASampler, on in the reference recipe)
an epoch has as many samples as images, but they are I/r images each taken r times in a row,
each time as another view; epochs come in cycles of r, and the cycle's seeded permutation is
split into r parts, so every image is taken r times per cycle. (The RASampler draws each
epoch's third independently; the cycle makes every image's use count, and so its next view,
known in closed form.)

**Views.** The u-th use of image i (u = cycle·r + copy) is its view ``(offset_i + u) mod K``
(``offset_i`` seeded per image): the sampler walks every recorded view before repeating one,
and the r copies in a batch are r different views (the sampler refuses r > K; the trainer
lowers r to K and says so). Online (no cache), u itself
names a fresh view record.

**Ranks.** Global batches are consecutive slices of the epoch's order (an incomplete last one
is dropped). Within a global batch of G = B·W samples the first W·n are the masked ones
(n = ⌊B·mask_probability⌋); rank r takes masked positions r, r + W, … < W·n and unmasked
positions W·n + r, W·n + r + W, …. Every rank thus masks the first n of its own batch, as
Proteus does per GPU, the copies of an image (neighbours in the order) land on different ranks
as in the RASampler, and the union over ranks is exactly the one-process batch, so a
W-process run computes the same global loss as one process with batch G.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from proteus.common.runtime.errors import ProteusError


@dataclass(frozen=True)
class StepPlan:
    rows: np.ndarray  # (B,) rows of image_views (usable images) for this rank, masked first
    uses: np.ndarray  # (B,) which use of that image this sample is (names its view)
    view_ids: np.ndarray | None  # (B,) cached view ids; None online
    n_masked: int  # the first n_masked samples get a patch mask
    masks: np.ndarray  # (n_masked, N) bool
    fresh: np.ndarray | None = None  # (B,) bool: scored by a teacher on a new view (hybrid)


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
        repeats: int = 1,
        fresh_fraction: float = 0.0,
    ):
        """``image_views``: (I, K) view ids of each usable image, view index order; K = 0
        (shape (I, 0)) for online training, where every use is a fresh view."""
        self.image_views = np.asarray(image_views)
        # --online-fraction: this share of every global batch is scored by the teacher on a
        # view the cache has not recorded (a seeded choice of positions per step).
        self.fresh_fraction = fresh_fraction
        self.seed = seed
        self.batch = batch_size
        self.world = world
        self.repeats = repeats
        self.global_batch = batch_size * world
        self.n_masked = int(batch_size * mask_probability)
        self.num_patches = num_patches
        self.mask_ratio = mask_ratio
        self.masked_patches = round(num_patches * mask_ratio)
        images, k = self.image_views.shape
        if repeats < 1:
            raise ProteusError(f"--repeated-aug {repeats}: at least 1 (1 turns it off)")
        if images < repeats:
            raise ProteusError(
                f"--repeated-aug {repeats}: more than the {images} usable images; lower it"
            )
        if 0 < k < repeats:
            # The r copies of an image in a step are its next r views: with fewer recorded
            # views some copies would be the very same sample (the trainer lowers r to K).
            raise ProteusError(
                f"--repeated-aug {repeats}: more than the {k} recorded views per image, so "
                "copies of an image in one step would repeat a view; lower it"
            )
        self.per_epoch = images // repeats  # distinct images an epoch takes
        if self.per_epoch * repeats < self.global_batch:
            raise ProteusError(
                f"--batch-size {batch_size} × {world} process(es) = {self.global_batch} is more "
                f"than the cache's {images} usable images; lower --batch-size"
            )
        self.steps_per_epoch = self.per_epoch * repeats // self.global_batch
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
        self._offsets = rng.integers(0, max(k, 1), size=images)
        self._orders: dict[int, np.ndarray] = {}  # the last epochs' (the plan looks ahead)
        self._orders_lock = threading.Lock()

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def global_samples(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The step's whole global batch, in order: (image rows, use numbers)."""
        epoch, index = divmod(step, self.steps_per_epoch)
        cycle, part = divmod(epoch, self.repeats)
        order = self._order(cycle if self.repeats > 1 else epoch)
        # Position p of the epoch is copy p mod r of its (p div r)-th image.
        positions = np.arange(index * self.global_batch, (index + 1) * self.global_batch)
        rows = order[part * self.per_epoch + positions // self.repeats]
        first_use = cycle * self.repeats if self.repeats > 1 else epoch
        return rows, first_use + positions % self.repeats

    def _order(self, key: int) -> np.ndarray:
        """The seeded image order of an epoch (a cycle with repeats), kept for the next
        steps: an ImageNet-sized permutation costs tens of milliseconds. The loader's
        thread and a remote cache's look-ahead ask for different epochs at once, so the
        order is returned from a local and the oldest kept one is evicted under a lock."""
        order = self._orders.get(key)
        if order is None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, key]))
            order = rng.permutation(len(self.image_views))
            with self._orders_lock:
                self._orders[key] = order
                while len(self._orders) > 3:
                    del self._orders[next(iter(self._orders))]
        return order

    def view_ids(self, rows: np.ndarray, uses: np.ndarray) -> np.ndarray:
        k = self.image_views.shape[1]
        return self.image_views[rows, (self._offsets[rows] + uses) % k]

    def global_views(self, step: int) -> np.ndarray:
        """Cached view ids of the step's whole global batch (tests, single-process checks)."""
        return self.view_ids(*self.global_samples(step))

    def rank_views(self, step: int, rank: int) -> np.ndarray | None:
        """The cached view ids ``plan(step, rank)`` will read, without its masks: what a
        remote cache fetches ahead."""
        if not self.image_views.shape[1]:
            return None
        rows, uses = self.global_samples(step)
        mine = self._rank_positions(rank)
        return self.view_ids(rows[mine], uses[mine])

    def _rank_positions(self, rank: int) -> np.ndarray:
        n, w = self.n_masked, self.world
        return np.concatenate(
            [np.arange(rank, w * n, w), np.arange(w * n + rank, self.global_batch, w)]
        )

    def plan(self, step: int, rank: int) -> StepPlan:
        rows, uses = self.global_samples(step)
        n = self.n_masked
        mine = self._rank_positions(rank)
        masks = self.masks(step, rank, self.num_patches)
        rows, uses = rows[mine], uses[mine]
        views = self.view_ids(rows, uses) if self.image_views.shape[1] else None
        fresh = self._fresh(step)[mine] if self.fresh_fraction else None
        return StepPlan(rows, uses, views, n, masks, fresh)

    def masks(self, step: int, rank: int, num_patches: int) -> np.ndarray:
        """This rank's patch masks at ``step`` for a student of ``num_patches`` tokens:
        (n_masked, num_patches) bool. Students trained together with other grids each get
        their own, drawn from the same seeds."""
        n = self.n_masked
        mine = self._rank_positions(rank)[:n]
        if not n:
            return np.zeros((0, num_patches), bool)
        return np.stack([self._mask(step, int(j), num_patches) for j in mine])

    def _fresh(self, step: int) -> np.ndarray:
        """Which positions of the step's global batch are fresh: round(p × G) of them,
        seeded by the step (the same on any rank split)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 4, step]))
        count = round(self.fresh_fraction * self.global_batch)
        fresh = np.zeros(self.global_batch, bool)
        fresh[rng.choice(self.global_batch, count, replace=False)] = True
        return fresh

    def _mask(self, step: int, position: int, num_patches: int) -> np.ndarray:
        # Seeded by the sample's position in the global batch: the same on any rank split.
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2, step, position]))
        mask = np.zeros(num_patches, bool)
        mask[rng.choice(num_patches, round(num_patches * self.mask_ratio), replace=False)] = True
        return mask
