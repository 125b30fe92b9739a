"""OpenAI CLIP vision towers through open_clip.

Targets follow Proteus: the class token after ``ln_post`` and *before* the projection to the
joint embedding space, and patch tokens after ``ln_post``. The OpenAI weights were trained
with QuickGELU, so the architectures are open_clip's ``*-quickgelu`` configs.
"""

from __future__ import annotations

import torch
from open_clip.transformer import VisionTransformer
from timm.layers import resample_abs_pos_embed

from proteus.common.models.teachers.base import Teacher
from proteus.common.models.teachers.spec import TeacherBuild, TeacherOutput, TeacherSpec
from proteus.common.models.teachers.weights import load_into, load_weights_file


class ClipTeacher(Teacher):
    model: VisionTransformer

    def _features(self, x: torch.Tensor) -> TeacherOutput:
        visual = self.model
        # _embeds is open_clip's own patchify + class token + position embedding + ln_pre;
        # calling it (rather than forward) keeps the tokens that forward pools away.
        tokens = visual._embeds(x)
        layers: dict[int, torch.Tensor] = {}
        if self.layers:
            tokens, inter = visual.transformer.forward_intermediates(
                tokens, indices=list(self.layers)
            )
            layers = {i: visual.ln_post(t) for i, t in zip(self.layers, inter, strict=True)}
        else:
            tokens = visual.transformer(tokens)
        tokens = visual.ln_post(tokens)
        return {"cls": tokens[:, 0], "patch": tokens[:, 1:], "layers": layers}


def clip_model_config(spec: TeacherSpec) -> dict:
    """open_clip's config for ``spec.arch`` with the spec's overrides merged in."""
    import open_clip

    cfg = open_clip.get_model_config(spec.arch)
    if cfg is None:
        raise ValueError(f"open_clip has no config named {spec.arch}")
    overrides = dict(spec.arch_kwargs)
    vision = {**cfg["vision_cfg"], **overrides.pop("vision_cfg", {})}
    return {**cfg, **overrides, "vision_cfg": vision}


def build_clip(spec: TeacherSpec, request: TeacherBuild) -> ClipTeacher:
    from open_clip.model import _build_vision_tower

    cfg = clip_model_config(spec)
    vision_cfg = {**cfg["vision_cfg"], "image_size": request.image_size}
    visual = _build_vision_tower(
        cfg["embed_dim"], vision_cfg, quick_gelu=cfg.get("quick_gelu", False)
    )
    if request.weights is not None:
        state = load_weights_file(request.weights, spec.strip_prefixes)
        what = f"{spec.name} from {request.weights}"
    elif request.pretrained:
        state, what = _hub_state(spec), f"{spec.name} from open_clip ({spec.source})"
    else:
        state = None
    if state is not None:
        if "positional_embedding" in state:  # else load_into names it as missing
            grid = request.image_size // spec.patch_size
            state["positional_embedding"] = _resample(state["positional_embedding"], grid)
        load_into(visual, state, what=what)
    return ClipTeacher(spec, request, visual)


def _hub_state(spec: TeacherSpec) -> dict[str, torch.Tensor]:
    import open_clip

    model = open_clip.create_model(spec.arch, pretrained=spec.source.split(":")[-1])
    return dict(model.visual.state_dict())


def _resample(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """Resize a (1 + g², D) table to ``grid``; the class position stays as it is."""
    old = round((pos.shape[0] - 1) ** 0.5)
    if old == grid:
        return pos
    out = resample_abs_pos_embed(
        pos[None], new_size=(grid, grid), old_size=(old, old), num_prefix_tokens=1
    )
    return out[0]
