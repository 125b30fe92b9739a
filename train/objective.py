"""The Proteus objective: token, feature and patch MSE through three LayerNorm+Linear heads.

L_token = MSE(token_head(cls_clean), t_cls)
L_fea   = MSE([token_head(cls_clean); fea_head(patch_clean)], [t_cls; t_patch])
L_patch = MSE(patch_head(patch_masked)[mask], t_patch[mask])
loss    = λ_token·L_token + λ_fea·L_fea + λ_patch·L_patch
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from proteus.common.errors import ProteusError


@dataclass(frozen=True)
class Lambdas:
    token: float = 1.0
    fea: float = 1.0
    patch: float = 1.0

    def needed_targets(self) -> tuple[str, ...]:
        """Only these arrays are read from the cache: a token-only run never touches patch."""
        names = ["cls"] if self.token or self.fea else []
        if self.fea or self.patch:
            names.append("patch")
        return tuple(names)


def resolve_lambdas(
    family: str, token: float | None, fea: float | None, patch: float | None
) -> Lambdas:
    """Defaults 1/1/1; for CLIP teachers 1/0/0 (Proteus: CLIP patch tokens are not trained)."""
    default = Lambdas(1.0, 0.0, 0.0) if family == "clip" else Lambdas()
    lambdas = Lambdas(
        default.token if token is None else token,
        default.fea if fea is None else fea,
        default.patch if patch is None else patch,
    )
    if min(lambdas.token, lambdas.fea, lambdas.patch) < 0:
        raise ProteusError("--lambda-*: loss weights cannot be negative")
    if not (lambdas.token or lambdas.fea or lambdas.patch):
        raise ProteusError("--lambda-token/--lambda-fea/--lambda-patch: all zero, nothing to train")
    return lambdas


def _head(d_student: int, d_teacher: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(d_student), nn.Linear(d_student, d_teacher))


class ProteusHeads(nn.Module):
    """The heads a run needs (an unused head would stall DDP's gradient reduction)."""

    def __init__(self, d_student: int, d_teacher: int, lambdas: Lambdas):
        super().__init__()
        self.token_head = _head(d_student, d_teacher) if lambdas.token or lambdas.fea else None
        self.fea_head = _head(d_student, d_teacher) if lambdas.fea else None
        self.patch_head = _head(d_student, d_teacher) if lambdas.patch else None


def resize_patch_targets(patch: torch.Tensor, grid: tuple[int, int], to: tuple[int, int]):
    """Teacher patch tokens (B, Ht·Wt, D) bilinearly resampled to the student grid."""
    if tuple(grid) == tuple(to):
        return patch
    b, _, d = patch.shape
    image = patch.transpose(1, 2).reshape(b, d, *grid)
    image = F.interpolate(image.float(), size=to, mode="bilinear", align_corners=False)
    return image.flatten(2).transpose(1, 2).to(patch.dtype)


def proteus_losses(
    heads: ProteusHeads,
    lambdas: Lambdas,
    clean: dict[str, torch.Tensor] | None,
    masked_patch: torch.Tensor | None,
    mask: torch.Tensor | None,
    t_cls: torch.Tensor | None,
    t_patch: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """Loss parts and their weighted sum.

    ``clean``: the student's cls (B, Ds) and patch (B, N, Ds) on unmasked input.
    ``masked_patch``: (n, N, Ds) patch tokens of the masked pass over the first n samples,
    ``mask``: (n, N) bool. Targets are float, patch targets already on the student grid.
    """
    zero = next(heads.parameters()).new_zeros(())
    parts = {"loss_token": zero, "loss_fea": zero, "loss_patch": zero}
    if heads.token_head is not None:
        cls_pred = heads.token_head(clean["cls"])
        if lambdas.token:
            parts["loss_token"] = F.mse_loss(cls_pred, t_cls)
        if lambdas.fea:
            pred = torch.cat([cls_pred.unsqueeze(1), heads.fea_head(clean["patch"])], 1)
            target = torch.cat([t_cls.unsqueeze(1), t_patch], 1)
            parts["loss_fea"] = F.mse_loss(pred, target)
    if lambdas.patch and mask is not None and mask.any():
        n = mask.shape[0]
        pred = heads.patch_head(masked_patch)[mask]
        parts["loss_patch"] = F.mse_loss(pred, t_patch[:n][mask])
    parts["loss"] = (
        lambdas.token * parts["loss_token"]
        + lambdas.fea * parts["loss_fea"]
        + lambdas.patch * parts["loss_patch"]
    )
    return parts
