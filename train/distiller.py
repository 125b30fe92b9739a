"""Student + heads as one module, so DDP sees one forward that returns the loss parts."""

from __future__ import annotations

import torch
from torch import nn

from proteus.common.students import Student
from proteus.train.objective import Lambdas, ProteusHeads, proteus_losses


class Distiller(nn.Module):
    def __init__(self, student: Student, teacher_dim: int, lambdas: Lambdas):
        super().__init__()
        self.student = student
        self.heads = ProteusHeads(student.embed_dim, teacher_dim, lambdas)
        self.lambdas = lambdas
        # Without the patch loss the mask token never gets a gradient; DDP needs every
        # trainable parameter to get one.
        student.mask_token.requires_grad_(bool(lambdas.patch))

    def forward(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        t_cls: torch.Tensor | None,
        t_patch: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Two student passes: clean (token, feature losses), masked (patch loss) over the
        first ``len(masks)`` samples only; the others would be masked by nothing."""
        clean = None
        if self.heads.token_head is not None:
            clean = self.student(images)
        masked_patch = None
        n = masks.shape[0]
        if self.lambdas.patch and n:
            masked_patch = self.student(images[:n], mask=masks)["patch"]
        return proteus_losses(self.heads, self.lambdas, clean, masked_patch, masks if n else None,
                              t_cls, t_patch)  # fmt: skip

    def no_weight_decay(self) -> set[str]:
        return {f"student.{name}" for name in self.student.no_weight_decay()}


def param_groups(model: Distiller, weight_decay: float) -> list[dict]:
    """timm/DeiT convention: no decay for biases, norms, position embeddings, special tokens."""
    skip = model.no_weight_decay()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in skip else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
