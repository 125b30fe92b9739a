"""Frozen features of an ImageFolder tree, rendered the evaluation way (centre crop).

The same DALI renderer as training, fed records of a centred square covering 87.5% of the
short side (the 256 → 224 resize-and-crop convention of DINO/DeiT evaluation).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from proteus.common.data.dataset import ImageList, scan_images
from proteus.common.data.images import probe_image, read_encoded
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.prefetch import prefetch
from proteus.common.runtime.progress import progress_bar
from proteus.common.views.records import AugPolicy, ViewTable, view_records
from proteus.common.views.renderer import RenderConfig, Renderer
from proteus.evaluate.models import FeatureSource

CROP_FRACTION = 224 / 256


@dataclass
class FeatureSet:
    cls: np.ndarray  # (M, D) float32
    mean_patch: np.ndarray  # (M, D) float32: average of the patch tokens
    labels: np.ndarray  # (M,) int64
    classes: tuple[str, ...]
    skipped: list[str]  # paths that could not be read or decoded
    blocks: list[np.ndarray] | None = None  # last n blocks' class tokens, each (M, D_i)


def center_views(sizes: np.ndarray, fraction: float = CROP_FRACTION) -> ViewTable:
    """One record per image: the centred square of side ``fraction`` × the short side."""
    n = len(sizes)
    side = np.maximum(1, np.round(sizes.min(1) * fraction)).astype(np.int32)
    y = (sizes[:, 0] - side) // 2
    x = (sizes[:, 1] - side) // 2
    return ViewTable(
        image=np.arange(n, dtype=np.int64),
        view=np.zeros(n, np.int32),
        crop=np.stack([y, x, side, side], 1).astype(np.int32),
        flip=np.zeros(n, bool),
        color=np.tile(np.array([1, 1, 1, 0], np.float32), (n, 1)),
        grayscale=np.zeros(n, bool),
        erase=np.zeros((n, 4), np.int32),
    )


@dataclass
class LabelledImages:
    """An ImageFolder tree's readable images: headers probed once, the unreadable set aside."""

    images: ImageList
    rows: np.ndarray  # indices into images.paths of the readable ones
    sizes: np.ndarray  # (len(rows), 2) H, W
    transcode: np.ndarray  # (len(rows),) bool
    skipped: list[str]  # paths whose header could not be read

    @classmethod
    def scan(cls, folder: Path, option: str) -> LabelledImages:
        images = _labelled(folder, option)
        probes = [probe_image(images.root / p) for p in images.paths]
        ok = [i for i, p in enumerate(probes) if not p.error]
        return cls(
            images,
            np.array(ok, np.int64),
            np.array([[probes[i].height, probes[i].width] for i in ok]).reshape(-1, 2),
            np.array([probes[i].transcode for i in ok], bool),
            [images.paths[i] for i, p in enumerate(probes) if p.error],
        )

    @property
    def labels(self) -> np.ndarray:
        return self.images.labels[self.rows]

    def encoded(self, row: int) -> np.ndarray:
        return read_encoded(
            self.images.root / self.images.paths[self.rows[row]], self.transcode[row]
        )

    def path(self, row: int) -> str:
        return str(self.images.paths[self.rows[row]])


def folder_features(
    source: FeatureSource,
    folder: Path | LabelledImages,
    *,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    option: str = "--train",
    progress: bool = True,
    blocks: int = 0,
    rows: np.ndarray | None = None,
) -> FeatureSet:
    """``blocks``: also keep the class tokens of the last n blocks (DINOv2 protocol);
    ``rows``: only these of the folder's readable images (by their order)."""
    found = folder if isinstance(folder, LabelledImages) else LabelledImages.scan(folder, option)
    chosen = np.arange(len(found.rows)) if rows is None else np.asarray(rows)
    views = center_views(found.sizes[chosen])
    # The reference evaluates with a bicubic resize and a centre crop.
    renderer = Renderer(
        RenderConfig(
            source.image_size, source.mean, source.std, max_batch=batch_size, interpolation="cubic"
        )
    )
    source.model.to(device)
    skipped = list(found.skipped) if rows is None else []
    cls, mean_patch, kept, per_block = [], [], [], []
    name = found.images.root.name
    for start in progress_bar(
        range(0, len(chosen), batch_size),
        desc=f"features {name}",
        unit="batch",
        disable=not progress,
        leave=False,
    ):
        batch = list(range(start, min(start + batch_size, len(chosen))))
        encoded = [found.encoded(int(chosen[k])) for k in batch]
        pixels, bad = renderer.render_tolerant(encoded, views[np.array(batch)])
        skipped += [found.path(int(chosen[batch[k]])) for k in bad]
        batch = [k for n, k in enumerate(batch) if n not in bad]
        if pixels is None:
            continue
        out = source.features(pixels.to(device), blocks)
        if blocks:
            per_block.append([b.cpu().numpy() for b in out["blocks"]])
        cls.append(out["cls"].cpu().numpy())
        mean_patch.append(out["patch"].mean(1).cpu().numpy())
        kept += [int(chosen[k]) for k in batch]
    if not kept:
        raise ProteusError(f"{option} {name}: none of its images could be read")
    stacked = [np.concatenate(b) for b in zip(*per_block, strict=True)] if blocks else None
    return FeatureSet(
        np.concatenate(cls),
        np.concatenate(mean_patch),
        found.labels[kept],
        found.images.classes,
        skipped,
        stacked,
    )


# DINOv2's make_classification_train_transform: RandomResizedCrop (torchvision's scale and
# ratio) with bicubic resampling, and a horizontal flip with p 0.5; nothing else.
TRAIN_VIEWS = AugPolicy(
    crop_scale=(0.08, 1.0),
    crop_ratio=(3 / 4, 4 / 3),
    interpolation="cubic",
    flip_prob=0.5,
    jitter_prob=0.0,
    grayscale_prob=0.0,
    randaug_layers=0,
    erase_prob=0.0,
)


def view_features(
    source: FeatureSource,
    found: LabelledImages,
    batches: Iterator[np.ndarray],
    *,
    device: torch.device | str,
    blocks: int,
    seed: int,
    policy: AugPolicy = TRAIN_VIEWS,
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """For each batch of rows: a fresh training view of each image (the u-th time an image is
    drawn it gets view u, a pure function of the seed), rendered in a background thread, and
    the frozen model's outputs on it (``source.features``) with the labels."""
    renderer: Renderer | None = None
    uses: dict[int, int] = {}

    def rendered() -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        nonlocal renderer
        for rows in batches:
            if renderer is None:  # built in the thread that runs it
                renderer = Renderer(
                    RenderConfig.for_policy(
                        policy, source.image_size, source.mean, source.std, max_batch=len(rows)
                    )
                )
            view = np.array([uses.get(int(r), 0) for r in rows], np.int64)
            for r in rows:
                uses[int(r)] = uses.get(int(r), 0) + 1
            table = view_records(policy, seed, rows, view, found.sizes[rows], source.image_size)
            pixels, bad = renderer.render_tolerant([found.encoded(int(r)) for r in rows], table)
            if pixels is not None:  # an image that fails to decode drops out of its batch
                yield pixels, np.delete(found.labels[rows], list(bad))

    source.model.to(device)
    for pixels, labels in prefetch(rendered(), depth=2):
        out = source.features(pixels.to(device), blocks)
        yield out, torch.as_tensor(labels).long().to(device)


def _labelled(folder: Path, option: str) -> ImageList:
    images = scan_images(Path(folder), option)
    if (images.labels < 0).any():
        raise ProteusError(
            f"{option} {folder}: needs labels: an ImageFolder tree (one sub-folder per class) "
            "or a list file with a label after each path"
        )
    return images
