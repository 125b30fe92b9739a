"""The resolved options of one extraction; written into the cache manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from proteus.common.views.records import AugPolicy

AUTO_MAX_VIEWS = 8  # docs/QUALITY.md: where more views stopped paying for their bytes


@dataclass(frozen=True)
class ExtractConfig:
    teacher: str  # registry name or timm:<model>
    # ImageFolder tree, flat folder of images, a text file of image paths, or tar shards
    # (local, or a URL on an object store).
    data: Path | str
    # Cache folder, or an s3:// / gs:// / file:// URL; re-running the same command resumes it.
    out: Path | str
    # K recorded views per image: storage and teacher time grow linearly. None: one view
    # per planned epoch (each image is used once per epoch), at most AUTO_MAX_VIEWS.
    views: int | None = None
    epochs: int = 300  # the epochs training will run (the reference's 300), for views=None
    image_size: int | None = None  # None: the teacher's default (224 for the shipped ViTs)
    layers: tuple[int, ...] = ()  # intermediate blocks stored as layer_<i> (for hint losses)
    registers: bool = False  # also store the register tokens (DINOv3, RADIO) as "registers"
    batch_size: int = 64  # views per teacher forward
    weights: Path | None = None  # local weights file instead of the model hub
    pretrained: bool = True  # False: random-init teacher (tests, benchmarks); never downloads
    seed: int = 0  # view parameters are a pure function of (seed, image index, view index)
    policy: AugPolicy = field(default_factory=AugPolicy)  # how views are drawn
    # Reuse this sealed cache's images and view records (its policy, seed, K and image size
    # replace the ones above), so two teachers' targets describe the same pixels.
    views_from: Path | str | None = None
    # With a URL --out: each process's local folder its shards are written in before upload.
    staging: Path | None = None  # None: $PROTEUS_STAGING or ~/.cache/proteus/staging
    device: str = "auto"  # cpu | cuda | auto
    # GPUs one teacher's blocks are spread over (common/models/teachers/placement.py); each process
    # under torchrun uses GPUs local_rank × G … + G − 1.
    gpus_per_teacher: int = 1
    precision: str = "auto"  # float32 | bfloat16 (autocast); auto = bfloat16 on cuda only
    dtype: str = "float16"  # storage of the targets: float16 | float32 | int8 (per-token scale)
    pca: int | None = None  # keep K principal components of token targets (patch, layers)
    pca_sample: int = 2048  # views whose teacher tokens the PCA basis is fitted on
    # 256 views of DINOv2-g patch targets is ~200 MB: big files for object stores and
    # parallel file systems, small enough to hold one in memory while the next is built.
    shard_views: int = 256
    render_threads: int = 4  # DALI CPU threads
    progress: bool = (
        True  # on rank 0: bars on a terminal, plain lines off one (common/runtime/progress.py)
    )

    def resolved_views(self) -> int:
        return self.views if self.views is not None else min(self.epochs, AUTO_MAX_VIEWS)
