"""Token grids: teacher targets resampled onto a student's patch grid.

Training feeds them to the losses (``train/targets.py``) and agreement scores heads against
them (``evaluate/agreement.py``), so both resample the same way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def resize_patch_targets(patch: torch.Tensor, grid: tuple[int, int], to: tuple[int, int]):
    """Teacher patch tokens (B, Ht·Wt, D) bilinearly resampled to the student grid."""
    if tuple(grid) == tuple(to):
        return patch
    b, _, d = patch.shape
    image = patch.transpose(1, 2).reshape(b, d, *grid)
    image = F.interpolate(image.float(), size=to, mode="bilinear", align_corners=False)
    return image.flatten(2).transpose(1, 2).to(patch.dtype)


def resize_layer_targets(tokens: torch.Tensor, to: tuple[int, int]) -> torch.Tensor:
    """A layer target (B, 1 + n·n, D) on its square grid: the global token kept, the patch
    tokens resampled to the student grid (a CNN stage has its own grid, not the teacher's)."""
    side = math.isqrt(tokens.shape[1] - 1)
    return torch.cat([tokens[:, :1], resize_patch_targets(tokens[:, 1:], (side, side), to)], 1)
