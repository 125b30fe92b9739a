"""``build_student``: a record (or ``timm:<name>``) and a style become a :class:`Student`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import torch

from proteus.common.models.students.base import Student
from proteus.common.models.students.convnet import ConvStudent
from proteus.common.models.students.feature_map import probe_feature_map
from proteus.common.models.students.registry import (
    STUDENT_STYLES,
    TIMM_PREFIX,
    StudentSpec,
    StudentStyle,
    get_student_spec,
)
from proteus.common.models.students.vit import ViTStudent
from proteus.common.runtime.errors import ProteusError

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer


def build_student(
    name: str,
    image_size: int,
    *,
    drop_path: float = 0.0,
    style: str = "arch",
    grid: tuple[int, int] | None = None,
    state: Mapping | None = None,
) -> Student:
    """``style``: a key of STUDENT_STYLES (recorded in checkpoints: it changes the modules).
    ``grid``: the teacher's patch grid, which a convnet's dense tokens are resampled to (a
    ViT's grid is its own: targets are resampled to it instead)."""
    spec = get_student_spec(name)
    if style not in STUDENT_STYLES:
        raise ProteusError(f"student style {style!r}: one of {', '.join(STUDENT_STYLES)}")
    if spec.kind == "convnet":
        student: Student = _build_convnet(spec, image_size, drop_path, grid)
    else:
        student = _build_vit(spec, image_size, drop_path, style)
    if state is not None:
        student.load_state_dict(state)
    return student


def _build_vit(spec: StudentSpec, image_size: int, drop_path: float, style: str) -> ViTStudent:
    import timm

    chosen = STUDENT_STYLES[style]
    if image_size % spec.patch_size:
        raise ProteusError(
            f"--student {spec.name}: image size {image_size} (from the cache) is not a multiple "
            f"of its patch size {spec.patch_size}; pick a /{_divisor_hint(image_size)} student "
            "or re-extract at a size that fits"
        )
    kwargs: dict[str, Any] = {"img_size": image_size, "num_classes": 0, "drop_path_rate": drop_path}
    kwargs |= dict(spec.arch_kwargs)
    if not spec.name.startswith(TIMM_PREFIX):
        kwargs |= dict(chosen.arch_kwargs)
    vit = cast("VisionTransformer", timm.create_model(spec.arch, pretrained=False, **kwargs))
    if not getattr(vit, "has_class_token", True) or getattr(vit, "cls_token", None) is None:
        raise ProteusError(f"--student {spec.name}: has no class token; the token loss needs one")
    _apply_style(vit, chosen)
    student = ViTStudent(spec, vit, image_size, chosen.mask_token_std, chosen.norm_patches)
    # What rebuilds this backbone with timm alone (export); drop path is training-only.
    student.arch_kwargs = {k: v for k, v in kwargs.items() if k != "drop_path_rate"}
    return student


def _apply_style(vit: VisionTransformer, style: StudentStyle) -> None:
    """The parts of a style timm's constructor arguments cannot express."""
    if style.norm_eps is not None:
        set_norm_eps(vit, style.norm_eps)
    if style.qkv_init == "xavier":
        for block in vit.blocks:
            qkv: torch.nn.Linear = cast(Any, block).attn.qkv
            torch.nn.init.xavier_uniform_(qkv.weight)  # (3d, d), as in_proj_weight
            if qkv.bias is not None:
                torch.nn.init.zeros_(qkv.bias)


def set_norm_eps(model: torch.nn.Module, eps: float) -> None:
    """Every LayerNorm's eps (timm builds its ViTs' with 1e-6 and takes no argument for it):
    a style's, and what an exported model needs to reproduce its student."""
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = eps


def _build_convnet(
    spec: StudentSpec, image_size: int, drop_path: float, grid: tuple[int, int] | None
) -> ConvStudent:
    """Built as timm defines the model: the reference's styles describe ViTs only."""
    import timm

    kwargs: dict[str, Any] = {"num_classes": 0, **spec.arch_kwargs}
    with torch.device("meta"):
        meta = timm.create_model(spec.arch, pretrained=False, **kwargs)
    features = probe_feature_map(meta, image_size, f"--student {spec.name}")
    if features is None:
        raise ProteusError(f"--student {spec.name}: {spec.arch} has no spatial feature map")
    if grid is not None and image_size % grid[0] + image_size % grid[1]:
        raise ProteusError(
            f"--student {spec.name}: image size {image_size} is not a whole number of the "
            f"teacher's {grid[0]}×{grid[1]} grid cells, which the masks are drawn on"
        )
    # Not every timm family takes drop_path_rate; pass it only when asked for.
    extra: dict[str, Any] = {"drop_path_rate": drop_path} if drop_path else {}
    net = timm.create_model(spec.arch, pretrained=False, **kwargs, **extra)
    student = ConvStudent(spec, net, image_size, features, grid)
    student.arch_kwargs = kwargs
    return student


def _divisor_hint(size: int) -> str:
    fits = [p for p in (14, 16, 8) if size % p == 0]
    return str(fits[0]) if fits else "patch that divides it"
