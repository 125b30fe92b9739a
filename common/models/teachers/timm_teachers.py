"""Teachers backed by timm models: DINOv2, DINOv3, SigLIP2, Perception Encoder, AIMv2,
EVA02-CLIP, C-RADIO, SynCLR, effnet_lite0 and any ``timm:<model>``.

Every token model timm builds (its ``VisionTransformer`` and ``Eva`` classes) answers the same
calls: ``forward_features`` (final normed tokens, prefix tokens first), ``forward_head(…,
pre_logits=True)`` (the summary, pooled as the record's ``global_pool`` says) and
``forward_intermediates``; so one teacher class serves them all.
"""

from __future__ import annotations

import sys
from typing import Any, cast

import timm
import torch
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from proteus.common.models.teachers.base import Teacher
from proteus.common.models.teachers.spec import TeacherBuild, TeacherOutput, TeacherSpec
from proteus.common.models.teachers.weights import load_into, load_weights_file
from proteus.common.runtime.errors import ProteusError


class ViTTeacher(Teacher):
    """A timm token model: final normed tokens; layers through the final norm too.

    Intermediate layers pass through the final LayerNorm, as DINOv2's
    ``get_intermediate_layers(norm=True)`` does: raw residual streams carry a few huge-norm
    tokens that would dominate an MSE target and defeat per-token quantisation.
    """

    model: VisionTransformer

    def _features(self, x: torch.Tensor) -> TeacherOutput:
        layers: dict[int, torch.Tensor] = {}
        if self.layers:
            has_prefix = self.model.num_prefix_tokens > 0
            out = self.model.forward_intermediates(
                x,
                indices=list(self.layers),
                norm=True,
                output_fmt="NLC",
                return_prefix_tokens=has_prefix,
            )
            # Not intermediates_only: timm returns (final tokens, per-layer outputs).
            final, inter = cast("tuple[torch.Tensor, list]", out)
            for i, item in zip(self.layers, inter, strict=True):
                # timm pairs (spatial, prefix) only when the model has prefix tokens; a ViT
                # without a class token gets its mean token first instead.
                spatial, prefix = item if has_prefix else (item, None)
                glob = prefix[:, :1] if prefix is not None else spatial.mean(1, keepdim=True)
                layers[i] = torch.cat([glob, spatial], dim=1)
        else:
            final = self.model.forward_features(x)
        result: TeacherOutput = {
            # pre-logits pooling: the class token for DINOv2/SynCLR/DINOv3 (global_pool
            # "token"), attention pooling for SigLIP2 and PE core ("map").
            "cls": self.model.forward_head(final, pre_logits=True),
            "patch": final[:, self.model.num_prefix_tokens :],
            "layers": layers,
        }
        if self.registers:
            result["registers"] = final[:, self._first_register : self.model.num_prefix_tokens]
        return result

    @property
    def _first_register(self) -> int:
        return 1 if getattr(self.model, "cls_token", None) is not None else 0

    @property
    def num_registers(self) -> int:
        return int(self.model.num_prefix_tokens) - self._first_register


class ConvTeacher(Teacher):
    """A timm CNN: the final feature map as patch tokens, pooled pre-logits as cls.

    Layers are the model's feature stages (``feature_info``), each flattened row-major with
    its mean-pooled token first, so every layer has the (B, 1 + N_i, D_i) shape of a ViT layer.
    """

    model: Any  # any timm CNN: used through timm's common API, which has no shared base type

    def _features(self, x: torch.Tensor) -> TeacherOutput:
        layers: dict[int, torch.Tensor] = {}
        if self.layers:
            fmap, inter = self.model.forward_intermediates(x, indices=list(self.layers))
            for i, stage in zip(self.layers, inter, strict=True):
                tokens = stage.flatten(2).transpose(1, 2)
                layers[i] = torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1)
        else:
            fmap = self.model.forward_features(x)
        if fmap.ndim != 4:
            raise ProteusError(
                f"{self.spec.name}: its features have shape {tuple(fmap.shape)}, not a "
                "(B, C, H, W) map; timm:<model> supports CNNs and timm VisionTransformer models"
            )
        return {
            "cls": self.model.forward_head(fmap, pre_logits=True),
            "patch": fmap.flatten(2).transpose(1, 2),
            "layers": layers,
        }


def build_vit(spec: TeacherSpec, request: TeacherBuild) -> ViTTeacher:
    """Token models. Hub weights come through timm, resampled to the image size."""
    hub = request.weights is None and request.pretrained
    pool: dict[str, Any] = {"global_pool": spec.global_pool} if spec.global_pool else {}
    model = cast(
        "VisionTransformer",
        timm.create_model(
            spec.arch,
            pretrained=hub,
            num_classes=0,
            img_size=request.image_size,
            **pool,
            **spec.arch_kwargs,
        ),
    )
    if request.weights is not None:
        state = load_weights_file(request.weights, spec.strip_prefixes)
        # timm's filter for the model's family converts released formats (Meta's DINOv2
        # w12/w3 SwiGLU names, register tokens, EVA/PE key names) and resamples position
        # embeddings to this image size.
        state = _checkpoint_filter(model)(state, model)
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        load_into(model, state, what=f"{spec.name} from {request.weights}")
    return ViTTeacher(spec, request, model)


def _checkpoint_filter(model: torch.nn.Module):
    """The checkpoint_filter_fn of the timm module that defines the model's class."""
    module = sys.modules[type(model).__module__]
    return getattr(module, "checkpoint_filter_fn", checkpoint_filter_fn)


def build_file_only_vit(spec: TeacherSpec, request: TeacherBuild) -> ViTTeacher:
    """ViTs released only as files (SynCLR): refuse to fall back to timm's own weights."""
    if request.weights is None and request.pretrained:
        raise ProteusError(
            f"{spec.name} has no hub weights; pass --weights FILE with the released checkpoint"
        )
    return build_vit(spec, request)


def build_conv(spec: TeacherSpec, request: TeacherBuild) -> ConvTeacher:
    """timm CNNs: hub weights through timm, or a local file in timm's key names."""
    hub = request.weights is None and request.pretrained
    model = timm.create_model(spec.arch, pretrained=hub, num_classes=0, **spec.arch_kwargs)
    if request.weights is not None:
        state = load_weights_file(request.weights, spec.strip_prefixes)
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        load_into(model, state, what=f"{spec.name} from {request.weights}")
    return ConvTeacher(spec, request, model)


def spec_from_timm(name: str, builder_name: str | None = None) -> TeacherSpec:
    """Registry record for ``timm:<model>``, read off the architecture without weights."""
    model: Any  # a ViT or a CNN: each branch reads its own attributes
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=0)
    cfg = model.pretrained_cfg
    is_vit = isinstance(model, VisionTransformer)
    if is_vit:
        patch, depth = model.patch_embed.patch_size[0], len(model.blocks)
    else:
        patch, depth = model.feature_info[-1]["reduction"], len(model.feature_info)
    return TeacherSpec(
        name=f"timm:{name}",
        family="timm",
        arch=name,
        embed_dim=model.num_features,
        patch_size=patch,
        depth=depth,
        builder=build_vit if is_vit else build_conv,
        image_size=cfg.get("input_size", (3, 224, 224))[-1],
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        source=f"timm/{name}",
    )
