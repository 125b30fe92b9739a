"""Online targets: the teacher in the loop on a fresh view of every sample (no cache).

The reference trains this way. It is the control that tells what a K-view cache costs, and
the mode for those who would rather not store targets. Everything else is shared with cached
training: the view policy and its records (every use of an image draws a new view index, so
its record is a pure function of (seed, image, use) and resuming needs only the step), the
renderer, sampler, objective, heads, logs, checkpoints and DDP.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from proteus.common.cache.stats import TargetStats
from proteus.common.data.dataset import ImageList, scan_images
from proteus.common.data.images import read_encoded
from proteus.common.data.probe import probe_images
from proteus.common.data.table import STATUS_OK
from proteus.common.runtime.errors import ProteusError
from proteus.common.storage.shardcache import ShardCacheConfig
from proteus.common.views.records import HOLDOUT_VIEW, AugPolicy, ViewTable, view_records
from proteus.common.views.renderer import REVISION as RENDER_REVISION
from proteus.train.sources.base import ProbeSet, Rows, Samples, TargetSource, TeacherInfo, pick
from proteus.train.sources.loop import LoopTeacher

ONLINE = "online"  # how records name a teacher in the loop: online:<teacher>


class OnlineTeacher(TargetSource):
    """The teacher, the images and their view policy."""

    kind = "teacher"

    @property
    def option(self) -> str:
        return f"--teacher {self.info.name}"

    def __init__(
        self,
        teacher: str,
        data: Path | str,
        *,
        weights: Path | None,
        image_size: int | None,
        layers: tuple[int, ...],
        policy: AugPolicy,
        seed: int,
        device: torch.device,
        progress: bool,
        shard_cache: ShardCacheConfig | None = None,
    ):
        self.images_list: ImageList = scan_images(data, shard_cache=shard_cache)
        self.images, self.skipped = probe_images(self.images_list, progress=progress)
        self.usable = np.flatnonzero(self.images.status == STATUS_OK)
        if not len(self.usable):
            raise ProteusError(f"--data {data}: none of its {len(self.images)} images is readable")
        self.loop = LoopTeacher(
            teacher, weights=weights, image_size=image_size, layers=layers, device=device
        )
        self.name = f"{ONLINE}:{teacher}"
        self.data_root = self.images_list.root
        spec = self.loop.teacher.spec
        self.info = TeacherInfo(
            name=teacher,
            family=spec.family,
            dim=spec.embed_dim,
            grid=(int(self.loop.teacher.grid[0]), int(self.loop.teacher.grid[1])),
            image_size=self.loop.image_size,
            mean=spec.mean,
            std=spec.std,
            weights_sha256=self.loop.weights_sha256,
            targets=self.loop.shapes(),
            policy=policy,
            seed=seed,
            render_revision=RENDER_REVISION,  # no cache to match: today's kernels
        )

    def rows(self, views: int | None) -> Rows:
        images = self.usable.astype(np.int64)
        return Rows(images, np.zeros((len(images), 0), np.int64), self.images.label[images])

    def statistics(self, names: tuple[str, ...]) -> TargetStats:
        raise ProteusError(
            "--standardize needs the statistics a cache records at extraction; online "
            "training has none: extract a cache, or drop --standardize"
        )

    def views(self, samples: Samples) -> ViewTable:
        """The u-th use of an image is its view u: the record a cache of these images stores
        as view u, so online and cached runs see the same pixels for u < K."""
        return self.records(samples.images, samples.uses)

    def records(self, images: np.ndarray, views: np.ndarray) -> ViewTable:
        sizes = np.stack([self.images.height[images], self.images.width[images]], 1)
        info = self.info
        return view_records(info.policy, info.seed, images, views, sizes, info.image_size)

    def encoded(self, image: int) -> np.ndarray:
        path = self.data_root / str(self.images.path[image])
        try:
            return read_encoded(path, bool(self.images.transcode[image]))
        except OSError as exc:
            raise ProteusError(f"{path}: cannot read it ({exc.strerror})") from exc

    def fetch(self, names: tuple[str, ...], samples: Samples) -> tuple[str, ...]:
        return names  # nothing to read ahead: the teacher needs the step's pixels

    def probe_sets(self, rows: Rows, count: int, seed: int) -> tuple[list[ProbeSet], list[str]]:
        """The first views of training images (each trained on once, in the first epochs)
        and as many views of them training never draws (indices from HOLDOUT_VIEW, the
        records a cache's --holdout-views holds), scored by the teacher: online training has
        no recorded views to overfit, which these two show. Up to ``count`` of each, like a
        cache's sets: one view per image would leave their difference to chance."""
        images = pick(rows.images, count, seed)
        per_image = max(1, count // len(images))
        repeated = np.repeat(images, per_image)
        uses = np.tile(np.arange(per_image, dtype=np.int64), len(images))
        first = Samples(repeated, uses)
        unseen = Samples(repeated, HOLDOUT_VIEW + uses)
        return [ProbeSet("trained_views", first), ProbeSet("heldout_views", unseen)], []

    def targets(
        self, fetched: object, pixels: torch.Tensor, device: torch.device
    ) -> dict[str, torch.Tensor]:
        assert isinstance(fetched, tuple)
        out = self.loop.forward(pixels.to(device, non_blocking=True))
        return {name: out[name] for name in fetched}

    def render_failed(self, step: int, reason: str) -> ProteusError:
        return ProteusError(
            f"step {step}: rendering failed ({reason}); an image under {self.data_root} "
            "cannot be decoded — remove it or convert it"
        )
