"""What a teacher is: its registry record, the build request, and the output contract."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from typing_extensions import NotRequired, TypedDict  # NotRequired: Python 3.11+

from proteus.common.runtime.errors import ProteusError

if TYPE_CHECKING:
    from proteus.common.models.teachers.base import Teacher

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class TeacherOutput(TypedDict):
    """What every teacher returns, so losses and the cache never branch on model kind."""

    cls: torch.Tensor  # (B, D): the summary (class token / MAP / CNN pooled pre-logits)
    patch: torch.Tensor  # (B, N, D): spatial tokens, row-major over the patch grid
    layers: dict[int, torch.Tensor]  # block index -> (B, 1 + N_i, D_i): global token first
    registers: NotRequired[torch.Tensor]  # (B, R, D): register tokens, when asked for


@dataclass(frozen=True)
class TeacherBuild:
    """What a caller asks of a teacher beyond its registry record."""

    image_size: int  # square input side in pixels; must be a multiple of the patch size
    layers: tuple[int, ...] = ()  # intermediate blocks to return (negative counts from the end)
    weights: Path | None = None  # local weights file; None means the model hub
    pretrained: bool = True  # False builds with random init (tests, benchmarks); no download
    registers: bool = False  # also return the register tokens (DINOv3, RADIO), final normed


@dataclass(frozen=True)
class TeacherSpec:
    """One registry entry. Normalisation travels with the teacher, as in timm."""

    name: str
    family: str  # dinov2 | dinov3 | clip | siglip2 | pe_* | aimv2 | eva02_clip | radio | …
    arch: str  # the timm or open_clip architecture the weights belong to
    embed_dim: int  # D of cls and patch targets
    patch_size: int  # pixels per token side (a CNN's total stride)
    depth: int  # number of blocks (ViT) or feature stages (CNN) that --layers indexes
    builder: Callable[[TeacherSpec, TeacherBuild], Teacher] = field(repr=False, compare=False)
    image_size: int = 224  # default input size; 224 with patch 14 gives a 16×16 grid
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = ""  # where default weights come from, shown by `proteus teachers`
    # Constructor overrides; the real entries leave it empty, tests shrink the model with it.
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # Prefixes under which released checkpoints keep the vision tower (e.g. "visual.").
    strip_prefixes: tuple[str, ...] = ()
    # The summary (cls) target: timm's pre-logits pooling with this global_pool ("token": the
    # class token after the final norm; "map": attention pooling; "avg"); None: the model's own.
    global_pool: str | None = None

    def build(self, request: TeacherBuild) -> Teacher:
        # Checked before building: a wrong size should not wait for a 1B-parameter download.
        if request.image_size % self.patch_size:
            fit = max(1, request.image_size // self.patch_size) * self.patch_size
            raise ProteusError(
                f"--image-size {request.image_size}: not a multiple of {self.name}'s patch size "
                f"{self.patch_size} (try {fit})"
            )
        return self.builder(self, request)
