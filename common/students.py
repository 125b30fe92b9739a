"""Students: timm ViTs with a learnable mask token, behind the same output contract as teachers.

The registry mirrors the teachers': named records (``vit_s14`` …), ``timm:<vit name>`` for any
other timm ViT, and ``register_student`` for plugins and tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from proteus.common.errors import ProteusError

if TYPE_CHECKING:  # timm is imported where a model is built, not at start-up
    from timm.models.vision_transformer import VisionTransformer

TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class StudentSpec:
    name: str
    arch: str  # timm model name the student is built from (random init, never downloaded)
    patch_size: int
    embed_dim: int
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)  # constructor overrides


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
):
    register_student(_spec)


@dataclass(frozen=True)
class StudentStyle:
    """How the reference builds a student for a teacher family, on top of the timm arch.

    ``arch_kwargs`` go to ``timm.create_model`` for the registered students (a ``timm:<name>``
    student is built as timm defines it); ``mask_token_std`` 0 means a zero mask token.
    """

    name: str
    arch_kwargs: Mapping[str, Any]
    mask_token_std: float


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
        # LayerScale) with a zero mask token. (init_values 0, not None: timm drops None
        # keyword arguments, and its DINOv2 archs default to 1e-5.)
        StudentStyle(
            "clip", {"init_values": 0.0, "pre_norm": True, "act_layer": "quick_gelu"}, 0.0
        ),
        # Reference models_synclr.py: a timm-style ViT without LayerScale, mask token N(0, .02).
        StudentStyle("synclr", {"init_values": 0.0}, 0.02),
    )
}


def student_style(teacher_family: str, reference: bool) -> str:
    """The style of student the reference pairs with a teacher family (DINOv2-style for every
    family it has no own student for); ``reference`` False keeps the timm arch as is."""
    if not reference:
        return "arch"
    return teacher_family if teacher_family in ("clip", "synclr") else "dinov2"


def get_student_spec(name: str) -> StudentSpec:
    if name.startswith(TIMM_PREFIX):
        return _timm_spec(name[len(TIMM_PREFIX) :])
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ProteusError(
            f"--student {name!r}: unknown; known students: {known}, or timm:<vit name>"
        )
    return _REGISTRY[name]


def _timm_spec(model: str) -> StudentSpec:
    import timm

    if not timm.is_model(model):
        raise ProteusError(f"--student timm:{model}: timm has no model of that name")
    with torch.device("meta"):
        probe = timm.create_model(model, pretrained=False, num_classes=0)
    if not hasattr(probe, "patch_embed") or not hasattr(probe, "blocks"):
        raise ProteusError(f"--student timm:{model}: not a ViT (students need patch tokens)")
    vit = cast("VisionTransformer", probe)  # duck-typed: timm's ViT-shaped models all match
    return StudentSpec(
        f"{TIMM_PREFIX}{model}", model, int(vit.patch_embed.patch_size[0]), vit.embed_dim
    )


class Student(nn.Module):
    """A timm ViT plus a mask token that replaces masked patch embeddings before positions
    are added (as DINOv2/iBOT do). ``forward_features`` returns the final normed tokens."""

    vit: VisionTransformer
    arch_kwargs: dict[str, Any]  # what rebuilds the backbone with timm alone (export)

    def __init__(
        self,
        spec: StudentSpec,
        vit: VisionTransformer,
        image_size: int,
        mask_token_std: float = 0.02,
    ):
        super().__init__()
        self.spec = spec
        self.image_size = image_size
        self.vit = vit
        self.mask_token = nn.Parameter(torch.zeros(1, 1, vit.embed_dim))
        if mask_token_std:
            nn.init.normal_(self.mask_token, std=mask_token_std)
        self.num_prefix = vit.num_prefix_tokens

    @property
    def embed_dim(self) -> int:
        return self.vit.embed_dim

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
        tokens = vit.norm(tokens)
        cls = tokens[:, 0]
        patch = tokens[:, self.num_prefix :]
        # Hint layers: global token first, then patches (registers dropped), like teachers'.
        layer_out = {
            i: torch.cat([h[:, :1], h[:, self.num_prefix :]], 1) for i, h in hidden.items()
        }
        return {"cls": cls, "patch": patch, "layers": layer_out}

    forward = forward_features


def build_student(
    name: str,
    image_size: int,
    *,
    drop_path: float = 0.0,
    style: str = "arch",
    state: Mapping | None = None,
) -> Student:
    """``style``: a key of STUDENT_STYLES (recorded in checkpoints: it changes the modules)."""
    import timm

    spec = get_student_spec(name)
    if style not in STUDENT_STYLES:
        raise ProteusError(f"student style {style!r}: one of {', '.join(STUDENT_STYLES)}")
    chosen = STUDENT_STYLES[style]
    if image_size % spec.patch_size:
        raise ProteusError(
            f"--student {name}: image size {image_size} (from the cache) is not a multiple of "
            f"its patch size {spec.patch_size}; pick a /{_divisor_hint(image_size)} student or "
            "re-extract at a size that fits"
        )
    kwargs: dict[str, Any] = {"img_size": image_size, "num_classes": 0, "drop_path_rate": drop_path}
    kwargs |= dict(spec.arch_kwargs)
    if not name.startswith(TIMM_PREFIX):
        kwargs |= dict(chosen.arch_kwargs)
    vit = cast("VisionTransformer", timm.create_model(spec.arch, pretrained=False, **kwargs))
    if not getattr(vit, "has_class_token", True) or getattr(vit, "cls_token", None) is None:
        raise ProteusError(f"--student {name}: has no class token; the token loss needs one")
    student = Student(spec, vit, image_size, chosen.mask_token_std)
    # What rebuilds this backbone with timm alone (export); drop path is training-only.
    student.arch_kwargs = {k: v for k, v in kwargs.items() if k != "drop_path_rate"}
    if state is not None:
        student.load_state_dict(state)
    return student


def _divisor_hint(size: int) -> str:
    fits = [p for p in (14, 16, 8) if size % p == 0]
    return str(fits[0]) if fits else "patch that divides it"
