"""Online targets: the teacher in the loop on a fresh view of every sample (no cache).

The reference trains this way. It is the control that tells what a K-view cache costs, and
the mode for those who would rather not store targets. Everything else is shared with cached
training: the view policy and its records (every use of an image draws a new view index, so
its record is a pure function of (seed, image, use) and resuming needs only the step), the
renderer, sampler, objective, heads, logs, checkpoints and DDP.

``OnlineTeacher`` stands where a cache stands: it carries a :class:`Manifest` describing what
a cache of this teacher would hold (``views_per_image`` 0, state ``online``), so the trainer
reads the same facts (dims, grid, mean/std, policy, weights hash) from either.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from proteus.common.cache.manifest import (
    FORMAT_VERSION,
    DatasetRecord,
    Manifest,
    RendererRecord,
    teacher_fields,
)
from proteus.common.data.dataset import ImageList, scan_images
from proteus.common.data.images import read_encoded
from proteus.common.data.probe import probe_images
from proteus.common.data.table import STATUS_OK, ImageTable
from proteus.common.models.teachers import Teacher, build_teacher
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.prefetch import prefetch
from proteus.common.runtime.version import __version__
from proteus.common.storage.shardcache import ShardCacheConfig
from proteus.common.views.records import AugPolicy, view_records
from proteus.common.views.renderer import Renderer, RenderError, dali_version
from proteus.train.sampler import ViewSampler

ONLINE = "online"  # the manifest state of a teacher in the loop


class OnlineTeacher:
    """The teacher, the images and their policy; ``manifest`` as a cache would record it."""

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
        self.images, skipped = probe_images(self.images_list, progress=progress)
        self.usable = np.flatnonzero(self.images.status == STATUS_OK)
        if not len(self.usable):
            raise ProteusError(f"--data {data}: none of its {len(self.images)} images is readable")
        self.policy, self.seed = policy, seed
        self.teacher: Teacher = build_teacher(
            teacher, image_size=image_size, layers=layers, weights=weights
        )
        sha = self.teacher.weights_sha256()
        self.teacher.to(device)
        self.precision = "bfloat16" if device.type == "cuda" else "float32"
        self.path = Path(f"{ONLINE}:{teacher}")  # names the source in messages and configs
        self.name = str(self.path)
        self.mirror = None  # never remote
        self.data_root = self.images_list.root
        self.manifest = self._manifest(teacher, sha, skipped)

    def close(self) -> None:
        """Nothing to release (a cache stops its background fetches here)."""

    def _manifest(self, name: str, sha: str, skipped: list[dict]) -> Manifest:
        t, size = self.teacher, self.teacher.image_size
        probe = self.forward(torch.zeros(1, 3, size, size, device=_device_of(t)))
        return Manifest(
            format_version=FORMAT_VERSION,
            state=ONLINE,
            proteus_version=__version__,
            teacher=name,
            **teacher_fields(t, sha),
            renderer=RendererRecord("dali", dali_version()),
            policy=self.policy.to_dict(),
            seed=self.seed,
            views_per_image=0,
            precision=self.precision,
            targets={k: list(v.shape[1:]) for k, v in probe.items()},
            dtype="none",
            codec="none (computed every step)",
            shard_views=0,
            dataset=DatasetRecord.of(self.images_list),
            counts={"images": len(self.images), "usable_images": len(self.usable)},
            skipped=skipped,
        )

    def labels(self) -> np.ndarray:
        """Labels of the usable images, in sampler row order."""
        return self.images.label[self.usable]

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The targets by name (cls, patch, layer_<i>) as float32, on the teacher's device."""
        with torch.autocast(
            pixels.device.type, torch.bfloat16, enabled=self.precision == "bfloat16"
        ):
            out = self.teacher(pixels)
        targets = {"cls": out["cls"], "patch": out["patch"]}
        targets |= {f"layer_{i}": layer for i, layer in out["layers"].items()}
        return {k: v.float() for k, v in targets.items()}


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@dataclass
class OnlineBatch:
    step: int
    images: torch.Tensor  # (B, 3, S, S) rendered fresh views
    n_masked: int
    masks: np.ndarray  # (n_masked, N_student) bool


class OnlineBatches:
    """Renders each step's fresh views in a background thread; the teacher runs at the step."""

    def __init__(
        self,
        source: OnlineTeacher,
        sampler: ViewSampler,
        renderer: Renderer,
        names: tuple[str, ...],
        rank: int,
    ):
        self.source, self.sampler, self.renderer = source, sampler, renderer
        self.names, self.rank = names, rank
        self._io = ThreadPoolExecutor(8, thread_name_prefix="proteus-read")

    def batch(self, step: int) -> OnlineBatch:
        plan = self.sampler.plan(step, self.rank)
        src = self.source
        images = src.usable[plan.rows]
        sizes = np.stack([src.images.height[images], src.images.width[images]], 1)
        views = view_records(
            src.policy, src.seed, images, plan.uses, sizes, src.manifest.image_size
        )
        encoded = list(self._io.map(self._load, images.tolist()))
        try:
            pixels = self.renderer.render(encoded, views)
        except RenderError as exc:
            raise ProteusError(
                f"step {step}: rendering failed ({exc}); an image under {src.data_root} "
                "cannot be decoded — remove it or convert it"
            ) from exc
        return OnlineBatch(step, pixels, plan.n_masked, plan.masks)

    def iterate(self, start: int, stop: int) -> Iterator[OnlineBatch]:
        return prefetch((self.batch(step) for step in range(start, stop)), depth=2)

    def targets(self, batch: OnlineBatch, device: torch.device) -> list[dict[str, torch.Tensor]]:
        out = self.source.forward(batch.images.to(device, non_blocking=True))
        return [{name: out[name] for name in self.names}]

    def _load(self, image: int) -> np.ndarray:
        table: ImageTable = self.source.images
        path = self.source.data_root / str(table.path[image])
        try:
            return read_encoded(path, bool(table.transcode[image]))
        except OSError as exc:
            raise ProteusError(f"{path}: cannot read it ({exc.strerror})") from exc
