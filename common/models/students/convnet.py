"""Convnet (and hierarchical hybrid) students: any timm backbone with a spatial feature map.

How the Proteus losses meet a model that has no tokens:

- **summary** (``cls``): timm's own pooled features, ``forward_head(pre_logits=True)``
  (global average pooling for a ResNet, pooling + norm for a ConvNeXt, the head conv for an
  EfficientViT).
- **dense** (``patch``): the last feature map, bilinearly resampled to the teacher's patch
  grid, one token per cell; each head's LayerNorm + Linear then maps every location into the
  teacher's space. Together they are the dense adaptor: the student is asked for features
  whose upsampling matches the teacher's, not for teacher targets pooled down to 7×7.
- **masked patches** (the patch loss): the masked cells of the grid are painted, in the input
  image, with a learned mask colour (3 values, zero = the mean colour after normalisation),
  the pixel-space counterpart of a ViT's mask token (as SparK and ConvNeXt V2 mask convnets).
  The patch head then predicts the teacher's tokens of the hidden cells.
- **hints** (``--hint S:T``): stage S's map, its global average as the global token and the
  map resampled to the grid as the tokens; each stage has its own width.

timm's ``forward_intermediates`` gives the stages of every family it supports, in NCHW.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from proteus.common.models.students.base import Student
from proteus.common.models.students.feature_map import FeatureMap
from proteus.common.models.students.registry import StudentSpec


class ConvStudent(Student):
    """``grid``: the token grid of ``patch`` and of the masks, the teacher's patch grid when
    trained (None: the feature map's own grid)."""

    def __init__(
        self,
        spec: StudentSpec,
        net: nn.Module,
        image_size: int,
        features: FeatureMap,
        grid: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.spec = spec
        self.image_size = image_size
        self.net = net
        self.features = features
        self._grid = (int(grid[0]), int(grid[1])) if grid is not None else features.native_grid
        # A learned colour for masked cells, in normalised pixel units (zero: the mean).
        self.mask_token = nn.Parameter(torch.zeros(1, 3, 1, 1))

    @property
    def backbone(self) -> nn.Module:
        return self.net

    @property
    def grid(self) -> tuple[int, int]:
        return self._grid

    @property
    def depth(self) -> int:
        return len(self.features.stage_dims)

    @property
    def summary_dim(self) -> int:
        return self.features.summary_dim

    @property
    def dense_dim(self) -> int:
        return self.features.dense_dim

    def block_dim(self, block: int) -> int:
        return self.features.stage_dims[block]

    def no_weight_decay(self) -> set[str]:
        inner = {f"net.{name}" for name in getattr(self.net, "no_weight_decay", set)()}
        return inner | {"mask_token"}

    def _maps(self, x: torch.Tensor, mask: torch.Tensor | None):
        if mask is not None:
            x = self._mask_pixels(x, mask)
        final, stages = self.net.forward_intermediates(x)  # type: ignore[operator]
        summary = self.net.forward_head(final, pre_logits=True)  # type: ignore[operator]
        dense = final if self.features.dense_from_final else stages[-1]
        return summary, dense, stages

    def forward_features(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, layers: tuple[int, ...] = ()
    ) -> dict[str, Any]:
        summary, dense, stages = self._maps(x, mask)
        return self._output(summary, dense, stages, layers)

    def _output(self, summary, dense, stages, layers: tuple[int, ...]) -> dict[str, Any]:
        layer_out = {
            i: torch.cat([stages[i].mean((2, 3)).unsqueeze(1), self._tokens(stages[i])], 1)
            for i in layers
        }
        return {
            "cls": summary,
            "patch": self._tokens(dense),
            "layers": layer_out,
            "feature_map": dense,
        }

    def _tokens(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) → (B, rows·cols, C) on :attr:`grid` (bilinear, like target resizing)."""
        if tuple(feature_map.shape[-2:]) != self._grid:
            feature_map = F.interpolate(
                feature_map, size=self._grid, mode="bilinear", align_corners=False
            )
        return feature_map.flatten(2).transpose(1, 2)

    def _mask_pixels(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Paint the masked grid cells of each image with the mask colour."""
        cells = mask.view(mask.shape[0], 1, *self._grid).to(x.dtype)
        hidden = F.interpolate(cells, size=x.shape[-2:], mode="nearest") > 0.5
        return torch.where(hidden, self.mask_token.to(x.dtype), x)

    def forward_with_summaries(
        self, x: torch.Tensor, blocks: int
    ) -> tuple[dict[str, Any], list[torch.Tensor]]:
        """Each of the last ``blocks`` stages, globally average-pooled (the stages' own width)."""
        summary, dense, stages = self._maps(x, None)
        pooled = [s.mean((2, 3)) for s in stages[len(stages) - blocks :]]
        return self._output(summary, dense, stages, ()), pooled

    def native_dense(self, out: dict[str, Any]) -> tuple[torch.Tensor, tuple[int, int]]:
        feature_map = out["feature_map"]
        rows, cols = feature_map.shape[-2:]
        return feature_map.flatten(2).transpose(1, 2), (int(rows), int(cols))
