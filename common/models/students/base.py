"""The student contract every kind (ViT, convnet) keeps, so losses, evaluation and export
never branch on what the student is."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from proteus.common.models.students.registry import StudentSpec


class Student(nn.Module):
    """A timm backbone plus a learnable mask token, returning the teachers' contract.

    ``forward_features(x, mask, layers)`` returns ``cls`` (B, summary_dim), ``patch``
    (B, rows·cols, dense_dim) on :attr:`grid`, and ``layers`` {block: (B, 1 + rows·cols, width)}
    (a global token first, then the block's tokens on :attr:`grid`). ``mask`` (B, rows·cols)
    is True where the input is hidden behind the mask token.
    """

    spec: StudentSpec
    image_size: int
    mask_token: nn.Parameter
    arch_kwargs: dict[str, Any]  # what rebuilds the backbone with timm alone (export)

    @property
    def backbone(self) -> nn.Module:
        """The timm model alone (what export writes): no mask token."""
        raise NotImplementedError

    @property
    def grid(self) -> tuple[int, int]:
        """Rows and columns of the ``patch`` tokens (and of the masks the sampler draws)."""
        raise NotImplementedError

    @property
    def depth(self) -> int:
        """How many blocks (ViT) or stages (convnet) a hint may name: 0 … depth − 1."""
        raise NotImplementedError

    @property
    def summary_dim(self) -> int:
        raise NotImplementedError

    @property
    def dense_dim(self) -> int:
        raise NotImplementedError

    @property
    def embed_dim(self) -> int:
        """The dense width (a ViT's embedding width)."""
        return self.dense_dim

    def block_dim(self, block: int) -> int:
        """The width of block (or stage) ``block``'s tokens, as ``layers`` returns them."""
        raise NotImplementedError

    def no_weight_decay(self) -> set[str]:
        raise NotImplementedError

    def forward_features(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, layers: tuple[int, ...] = ()
    ) -> dict[str, Any]:
        raise NotImplementedError

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, layers: tuple[int, ...] = ()
    ) -> dict[str, Any]:
        return self.forward_features(x, mask=mask, layers=layers)

    def forward_with_summaries(
        self, x: torch.Tensor, blocks: int
    ) -> tuple[dict[str, Any], list[torch.Tensor]]:
        """One forward: its output, and the global token of each of the last ``blocks``
        blocks, last block last (DINOv2's linear protocol reads these)."""
        raise NotImplementedError

    def dense_blocks(self, x: torch.Tensor, blocks: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The last ``blocks`` blocks' patch tokens (B, rows·cols, width) on :attr:`grid` and
        global tokens (B, width), last block last: what DINOv2's dense probes read."""
        out = self.forward_features(x, layers=tuple(range(self.depth - blocks, self.depth)))
        layers = out["layers"]
        return [(layers[i][:, 1:], layers[i][:, 0]) for i in sorted(layers)]

    def native_dense(self, out: dict[str, Any]) -> tuple[torch.Tensor, tuple[int, int]]:
        """The dense features of a forward's output on the student's own grid (before any
        resampling to a teacher's): (B, rows·cols, width) and (rows, cols). viz pictures these."""
        return out["patch"], self.grid
