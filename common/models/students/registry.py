"""Student records: the registry, the reference's student styles, and ``timm:<name>``.

A record names a timm architecture and its kind: ``vit`` (patch tokens, a class token, a mask
token on the patch embeddings) or ``convnet`` (any timm backbone with a feature map: CNNs and
hierarchical hybrids, see ``convnet.py``). ``timm:<name>`` takes any timm model; which kind it
is comes from the model itself.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from proteus.common.models.students.feature_map import probe_feature_map
from proteus.common.runtime.errors import ProteusError

TIMM_PREFIX = "timm:"
KINDS = ("vit", "convnet")


@dataclass(frozen=True)
class StudentSpec:
    name: str
    arch: str  # timm model name the student is built from (random init, never downloaded)
    patch_size: int  # pixels per output token side: a ViT's patch, a feature map's stride
    embed_dim: int  # width of the dense (patch) features
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)  # constructor overrides
    kind: str = "vit"  # one of KINDS

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind {self.kind!r} is not one of {KINDS}")


_REGISTRY: dict[str, StudentSpec] = {}


def register_student(spec: StudentSpec) -> StudentSpec:
    if spec.name.startswith(TIMM_PREFIX):
        raise ValueError(f"{spec.name}: the {TIMM_PREFIX} prefix is reserved for timm models")
    _REGISTRY[spec.name] = spec
    return spec


def list_students() -> list[StudentSpec]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


# DINOv2-architecture /14 students and plain /16 ViTs. How they are initialised and which
# variant of the block they use is the style's business (STUDENT_STYLES), not the record's.
_TINY = {"embed_dim": 192, "depth": 12, "num_heads": 3}
for _spec in (
    StudentSpec("vit_ti14", "vit_small_patch14_dinov2", 14, 192, _TINY),
    StudentSpec("vit_s14", "vit_small_patch14_dinov2", 14, 384),
    StudentSpec("vit_b14", "vit_base_patch14_dinov2", 14, 768),
    StudentSpec("vit_l14", "vit_large_patch14_dinov2", 14, 1024),
    StudentSpec("vit_ti16", "vit_tiny_patch16_224", 16, 192),
    StudentSpec("vit_s16", "vit_small_patch16_224", 16, 384),
    StudentSpec("vit_b16", "vit_base_patch16_224", 16, 768),
    StudentSpec("vit_l16", "vit_large_patch16_224", 16, 1024),
    # Convolutional and hybrid backbones for detectors, segmenters and phones (stride 32;
    # the dense width is the last feature map's). tests/common/models/test_students.py checks these
    # numbers against the built models.
    StudentSpec("resnet18", "resnet18", 32, 512, kind="convnet"),
    StudentSpec("resnet50", "resnet50", 32, 2048, kind="convnet"),
    StudentSpec("convnext_t", "convnext_tiny", 32, 768, kind="convnet"),
    StudentSpec("convnext_s", "convnext_small", 32, 768, kind="convnet"),
    StudentSpec("efficientnet_b0", "efficientnet_b0", 32, 1280, kind="convnet"),
    StudentSpec("mobilenetv4_s", "mobilenetv4_conv_small", 32, 960, kind="convnet"),
    StudentSpec("fastvit_t8", "fastvit_t8", 32, 768, kind="convnet"),
    StudentSpec("efficientvit_b1", "efficientvit_b1", 32, 256, kind="convnet"),
):
    register_student(_spec)


@dataclass(frozen=True)
class StudentStyle:
    """How the reference builds a student for a teacher family, on top of the timm arch.

    ``arch_kwargs`` go to ``timm.create_model`` for the registered ViT students (a
    ``timm:<name>`` student and a convnet are built as timm defines them);
    ``mask_token_std`` 0 means a zero mask token.
    """

    name: str
    arch_kwargs: Mapping[str, Any]
    mask_token_std: float
    # What timm's arguments cannot say, applied to the built model (build.py):
    norm_eps: float | None = None  # every LayerNorm's eps (timm's ViTs use 1e-6)
    qkv_init: str | None = None  # "xavier": qkv as nn.MultiheadAttention initialises it
    norm_patches: bool = True  # False: the final norm is the class token's only (CLIP's ln_post)


STUDENT_STYLES = {
    s.name: s
    for s in (
        # The timm architecture as it is (proteus 0.1): DINOv2 archs with LayerScale 1e-5,
        # plain ViTs without; the mask token N(0, 0.02).
        StudentStyle("arch", {}, 0.02),
        # Reference models_proteus_dinov2.py: vit_*(init_values=1.0, …); dinov2's
        # DinoVisionTransformer makes its mask token with torch.zeros.
        StudentStyle("dinov2", {"init_values": 1.0}, 0.0),
        # Reference models_clip.py: CLIP's VisionTransformer (ln_pre, QuickGELU, no
        # LayerScale) with a zero mask token; torch's LayerNorm (eps 1e-5), attention as
        # nn.MultiheadAttention (in_proj xavier-uniform, zero bias; init_weights_vit_timm
        # reaches the nn.Linear modules only), and ln_post on the class token alone: its
        # x_norm_patchtokens are the transformer's raw output. (init_values 0, not None: timm
        # drops None keyword arguments, and its DINOv2 archs default to 1e-5.)
        StudentStyle(
            "clip-ref",
            {"init_values": 0.0, "pre_norm": True, "act_layer": "quick_gelu"},
            0.0,
            norm_eps=1e-5,
            qkv_init="xavier",
            norm_patches=False,
        ),
        # proteus 0.2's approximation of it (timm's eps 1e-6, timm's qkv init, every token
        # through the final norm): what its checkpoints were trained as.
        StudentStyle(
            "clip", {"init_values": 0.0, "pre_norm": True, "act_layer": "quick_gelu"}, 0.0
        ),
        # Reference models_synclr.py: a timm-style ViT without LayerScale, mask token N(0, .02).
        StudentStyle("synclr", {"init_values": 0.0}, 0.02),
    )
}


def student_style(teacher_family: str, reference: bool, kind: str = "vit") -> str:
    """The style of student the reference pairs with a teacher family (DINOv2-style for every
    family it has no own student for); ``reference`` False keeps the timm arch as is, and so
    does a convnet (the styles describe the reference's ViTs)."""
    if not reference or kind == "convnet":
        return "arch"
    if teacher_family == "clip":
        return "clip-ref"
    return "synclr" if teacher_family == "synclr" else "dinov2"


def get_student_spec(name: str) -> StudentSpec:
    if name.startswith(TIMM_PREFIX):
        return _timm_spec(name[len(TIMM_PREFIX) :])
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=4, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ProteusError(
            f"--student {name!r}: unknown; {hint}known students: {', '.join(sorted(_REGISTRY))}, "
            "or timm:<any timm backbone>"
        )
    return _REGISTRY[name]


def _timm_spec(model: str) -> StudentSpec:
    import timm

    if not timm.is_model(model):
        raise ProteusError(f"--student timm:{model}: timm has no model of that name{_close(model)}")
    with torch.device("meta"):
        probe = timm.create_model(model, pretrained=False, num_classes=0)
    if _is_vit(probe):
        patch = int(probe.patch_embed.patch_size[0])  # type: ignore[index, union-attr]
        return StudentSpec(f"{TIMM_PREFIX}{model}", model, patch, int(probe.embed_dim))  # type: ignore[arg-type]
    found = probe_feature_map(probe, 224, f"--student timm:{model}")
    if found is None:
        raise ProteusError(
            f"--student timm:{model}: has no spatial feature map (timm's forward_intermediates) "
            f"for the dense targets{_close(model, with_maps=True)}"
        )
    stride = 224 // found.native_grid[0]
    return StudentSpec(f"{TIMM_PREFIX}{model}", model, stride, found.dense_dim, kind="convnet")


def _is_vit(model: nn.Module) -> bool:
    """A plain ViT (patch embedding, a block list, a class token): the ViT student wraps it."""
    return (
        hasattr(model, "patch_embed")
        and isinstance(getattr(model, "blocks", None), nn.Sequential)
        and getattr(model, "cls_token", None) is not None
        and hasattr(model, "_pos_embed")
    )


def _close(model: str, with_maps: bool = False) -> str:
    """'; close names: …' from timm's list (with feature maps: timm's features_only models)."""
    import timm

    names = timm.list_models()
    if with_maps:
        names = [n for n in names if n != model and "vit" not in n and "mixer" not in n]
    close = difflib.get_close_matches(model, names, n=5, cutoff=0.6)
    return f"; close names: {', '.join(close)}" if close else ""
