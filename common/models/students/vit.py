"""The ViT student: a timm ViT with a mask token that replaces masked patch embeddings before
position embeddings are added (as DINOv2/iBOT do)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from proteus.common.models.students.base import Student
from proteus.common.models.students.registry import StudentSpec

if TYPE_CHECKING:  # timm is imported where a model is built, not at start-up
    from timm.models.vision_transformer import VisionTransformer


class ViTStudent(Student):
    """``forward_features`` returns the final normed tokens; ``layers`` the blocks' raw outputs."""

    vit: VisionTransformer

    def __init__(
        self,
        spec: StudentSpec,
        vit: VisionTransformer,
        image_size: int,
        mask_token_std: float = 0.02,
        norm_patches: bool = True,
    ):
        """``norm_patches`` False: the final norm is the class token's alone (CLIP's ln_post);
        the patch tokens are the last block's output as it is."""
        super().__init__()
        self.spec = spec
        self.image_size = image_size
        self.vit = vit
        self.mask_token = nn.Parameter(torch.zeros(1, 1, vit.embed_dim))
        if mask_token_std:
            nn.init.normal_(self.mask_token, std=mask_token_std)
        self.num_prefix = vit.num_prefix_tokens
        self.norm_patches = norm_patches

    @property
    def backbone(self) -> nn.Module:
        return self.vit

    @property
    def summary_dim(self) -> int:
        return int(self.vit.embed_dim)

    @property
    def dense_dim(self) -> int:
        return int(self.vit.embed_dim)

    def block_dim(self, block: int) -> int:
        return int(self.vit.embed_dim)

    @property
    def grid(self) -> tuple[int, int]:
        rows, cols = self.vit.patch_embed.grid_size
        return int(rows), int(cols)

    @property
    def depth(self) -> int:
        return len(self.vit.blocks)

    def no_weight_decay(self) -> set[str]:
        inner = {f"vit.{name}" for name in getattr(self.vit, "no_weight_decay", set)()}
        return inner | {"mask_token"}

    def forward_features(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, layers: tuple[int, ...] = ()
    ) -> dict[str, Any]:
        """``mask``: (B, N) bool, True where a patch is replaced by the mask token."""
        vit = self.vit
        tokens = vit.patch_embed(x)
        if mask is not None:
            tokens = torch.where(mask.unsqueeze(-1), self.mask_token.to(tokens.dtype), tokens)
        tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(tokens)))
        wanted = set(layers)
        hidden: dict[int, torch.Tensor] = {}
        for index, block in enumerate(vit.blocks):
            tokens = block(tokens)
            if index in wanted:
                hidden[index] = tokens
        normed = vit.norm(tokens)
        cls = normed[:, 0]
        patch = (normed if self.norm_patches else tokens)[:, self.num_prefix :]
        # Hint layers: global token first, then patches (registers dropped), like teachers'.
        layer_out = {
            i: torch.cat([h[:, :1], h[:, self.num_prefix :]], 1) for i, h in hidden.items()
        }
        return {"cls": cls, "patch": patch, "layers": layer_out}

    def forward_with_summaries(
        self, x: torch.Tensor, blocks: int
    ) -> tuple[dict[str, Any], list[torch.Tensor]]:
        """The class token of each of the last ``blocks`` blocks after the final norm."""
        out = self.forward_features(x, layers=tuple(range(self.depth - blocks, self.depth)))
        return out, [self.vit.norm(out["layers"][i])[:, 0] for i in sorted(out["layers"])]

    def dense_blocks(self, x: torch.Tensor, blocks: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each block's tokens after the final norm, as DINOv2's get_intermediate_layers."""
        return [(self.vit.norm(p), self.vit.norm(c)) for p, c in super().dense_blocks(x, blocks)]
