"""The resolved options of one extraction; written into the cache manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExtractConfig:
    teacher: str  # registry name or timm:<model>
    data: Path  # ImageFolder tree, flat folder of images, or a text file of image paths
    out: Path  # cache folder; re-running the same command into it resumes
    views: int = 4  # K recorded views per image: storage and teacher time grow linearly
    image_size: int | None = None  # None: the teacher's default (224 for the shipped ViTs)
    layers: tuple[int, ...] = ()  # intermediate blocks stored as layer_<i> (for hint losses)
    batch_size: int = 64  # views per teacher forward
    weights: Path | None = None  # local weights file instead of the model hub
    seed: int = 0  # view parameters are a pure function of (seed, image index, view index)
    device: str = "auto"  # cpu | cuda | auto
    dtype: str = "float16"  # storage dtype of the targets
