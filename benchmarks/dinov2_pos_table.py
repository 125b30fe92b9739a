"""Q2: DINOv2's position table at 224 px, resampled as timm does vs as the hub model does.

DINOv2 checkpoints carry a 37×37 table (518 px / 14). The hub model resamples it at every
call (``interpolate_pos_encoding``: bicubic, scale (16 + 0.1) / 37, no antialias); timm
resamples it once when the weights load (``resample_abs_pos_embed``: bicubic to 16×16, with
antialias). The real tables cannot be downloaded here, so a smooth stand-in is used: the 2D
sine-cosine table ViTs are initialised from and learned tables resemble (MAE). Printed: the
relative difference of the two 16×16 tables, and of a ViT-S/14's class token with each on
the same images (random weights, so only the scale means something).

    python benchmarks/dinov2_pos_table.py
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sincos_table(side: int, dim: int) -> torch.Tensor:
    """(side·side, dim): MAE's 2D sine-cosine position embedding."""
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter) / quarter)
    parts = []
    for grid in (ys, xs):
        angles = grid.flatten()[:, None].float() * omega[None]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, 1)


def main() -> None:
    import timm
    from timm.layers import resample_abs_pos_embed

    dim, old, new = 384, 37, 16
    table = torch.cat([torch.zeros(1, dim), sincos_table(old, dim)])[None]  # cls first
    timm_way = resample_abs_pos_embed(
        table,
        new_size=(new, new),
        old_size=(old, old),
        num_prefix_tokens=1,
        interpolation="bicubic",
        antialias=True,
    )[0, 1:]
    grid = table[:, 1:].reshape(1, old, old, dim).permute(0, 3, 1, 2)
    scale = (new + 0.1) / math.sqrt(old * old)
    hub = F.interpolate(grid, scale_factor=(scale, scale), mode="bicubic", antialias=False)
    hub_way = hub.permute(0, 2, 3, 1).reshape(-1, dim)
    rel = (timm_way - hub_way).norm() / hub_way.norm()
    cos = F.cosine_similarity(timm_way, hub_way, dim=1)
    print(
        f"tables: relative difference {rel:.4f}, per-position cosine min {cos.min():.4f} "
        f"mean {cos.mean():.4f}"
    )

    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_small_patch14_dinov2", img_size=224, num_classes=0, init_values=1.0
    ).eval()
    images = torch.randn(8, 3, 224, 224)
    outs = []
    for patch_table in (timm_way, hub_way):
        with torch.no_grad():
            vit.pos_embed.copy_(torch.cat([table[0, :1], patch_table])[None])
            outs.append(vit.forward_features(images)[:, 0])
    rel_cls = (outs[0] - outs[1]).norm() / outs[1].norm()
    print(f"ViT-S/14 class token (random weights): relative difference {rel_cls:.4f}")


if __name__ == "__main__":
    main()
