"""The resolved options of an evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SourceConfig:
    """Which model's features: exactly one of checkpoint, teacher, or student + random_init."""

    checkpoint: Path | None = None  # a run folder or checkpoint file
    ema: bool | None = None  # with checkpoint: the EMA student; None: as its recipe says
    teacher: str | None = None  # registry name or timm:<model>
    weights: Path | None = None  # with teacher: a local weights file
    student: str | None = None  # with random_init: an untrained student (the floor)
    random_init: bool = False
    image_size: int = 224  # teachers and random students; a checkpoint keeps its own


@dataclass(frozen=True)
class ProbeConfig:
    source: SourceConfig
    train_dir: Path  # ImageFolder the probe is fitted on
    val_dir: Path  # ImageFolder top-1 is measured on
    batch_size: int = 128
    device: str = "auto"
    k: int = 20  # kNN neighbours (DINO protocol)
    temperature: float = 0.07  # kNN vote temperature
    holdout: float = 0.1  # linear probe: share of train held out to choose C (or the lr)
    # linear: "sklearn" (logistic regression on standardised cls / cls + mean patch),
    # "dinov2" (DINOv2's linear protocol, evaluate/protocol.py: classifiers over an lr grid on
    # the last 1 or 4 blocks, trained on fresh training views) or "dinov2-fast" (the same
    # classifiers on frozen centre-crop features).
    protocol: str = "sklearn"
    # dinov2: SGD iterations (None: DINOv2's 10 × 1250 = 12,500), each on --batch-size views;
    # dinov2-fast: SGD steps on the frozen features (None: 1,000).
    iterations: int | None = None
    progress: bool = True


@dataclass(frozen=True)
class DenseConfig:
    """``proteus eval seg`` and ``eval depth``: a linear probe on frozen patch features."""

    source: SourceConfig
    data: Path  # a data set folder in one of evaluate/dense_sets.py's layouts
    blocks: int = 1  # 1: the last block's patch tokens; 4: the last four, concatenated
    multiscale: bool = False  # seg: DINOv2's "+ms" test (5 scales, flips)
    flip_test: bool = True  # depth: average with the mirrored prediction (DINOv2's test)
    classes: int | None = None  # seg, generic layout: class count (ADE20K: 150)
    ignore_index: int = 255
    depth_scale: float | None = None  # depth PNG units per metre (None: 1000, millimetres)
    min_depth: float = 1e-3  # metres: the bins' range and the valid range of the maps
    max_depth: float = 10.0
    iterations: int | None = None  # None: the protocol's (seg 40,000; depth 38,400)
    batch_size: int | None = None  # None: the protocol's 16
    lr: float | None = None  # None: the protocol's (seg 1e-3; depth 5e-3)
    seed: int = 0
    pictures: Path | None = None  # a PNG of the first validation images' predictions
    device: str = "auto"
    progress: bool = True
