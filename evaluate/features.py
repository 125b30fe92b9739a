"""Frozen features of an ImageFolder tree, rendered the evaluation way (centre crop).

The same DALI renderer as training, fed records of a centred square covering 87.5% of the
short side (the 256 → 224 resize-and-crop convention of DINO/DeiT evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from proteus.common.data.dataset import ImageList, scan_images
from proteus.common.data.images import probe_image, read_encoded
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.progress import progress_bar
from proteus.common.views.records import ViewTable
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


def folder_features(
    source: FeatureSource,
    folder: Path,
    *,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    option: str = "--train",
    progress: bool = True,
    blocks: int = 0,
) -> FeatureSet:
    """``blocks``: also keep the class tokens of the last n blocks (DINOv2 protocol)."""
    images = _labelled(folder, option)
    probes = [probe_image(images.root / p) for p in images.paths]
    ok = [i for i, p in enumerate(probes) if not p.error]
    skipped = [images.paths[i] for i, p in enumerate(probes) if p.error]
    sizes = np.array([[probes[i].height, probes[i].width] for i in ok]).reshape(-1, 2)
    views = center_views(sizes)
    # The reference evaluates with a bicubic resize and a centre crop.
    renderer = Renderer(
        RenderConfig(
            source.image_size, source.mean, source.std, max_batch=batch_size, interpolation="cubic"
        )
    )
    source.model.to(device)
    cls, mean_patch, kept, per_block = [], [], [], []
    for start in progress_bar(
        range(0, len(ok), batch_size),
        desc=f"features {folder.name}",
        unit="batch",
        disable=not progress,
        leave=False,
    ):
        rows = list(range(start, min(start + batch_size, len(ok))))
        encoded = [
            read_encoded(images.root / images.paths[ok[r]], probes[ok[r]].transcode) for r in rows
        ]
        pixels, bad = renderer.render_tolerant(encoded, views[np.array(rows)])
        skipped += [images.paths[ok[rows[k]]] for k in bad]
        rows = [r for k, r in enumerate(rows) if k not in bad]
        if pixels is None:
            continue
        out = source.features(pixels.to(device), blocks)
        if blocks:
            per_block.append([b.cpu().numpy() for b in out["blocks"]])
        cls.append(out["cls"].cpu().numpy())
        mean_patch.append(out["patch"].mean(1).cpu().numpy())
        kept += [ok[r] for r in rows]
    if not kept:
        raise ProteusError(f"{option} {folder}: none of its images could be read")
    stacked = [np.concatenate(b) for b in zip(*per_block, strict=True)] if blocks else None
    return FeatureSet(
        np.concatenate(cls),
        np.concatenate(mean_patch),
        images.labels[kept],
        images.classes,
        skipped,
        stacked,
    )


def _labelled(folder: Path, option: str) -> ImageList:
    images = scan_images(Path(folder), option)
    if (images.labels < 0).any():
        raise ProteusError(
            f"{option} {folder}: needs labels: an ImageFolder tree (one sub-folder per class) "
            "or a list file with a label after each path"
        )
    return images
