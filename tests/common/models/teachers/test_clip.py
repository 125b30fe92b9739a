"""CLIP teachers through open_clip: targets before the projection, QuickGELU, weight files."""

from __future__ import annotations

import open_clip
import torch
from open_clip.model import CLIP
from open_clip.transformer import QuickGELU

from proteus.common.models.teachers import build_teacher, get_teacher_spec
from proteus.common.models.teachers.clip import clip_model_config

TINY_TEXT = {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}


def _open_clip_model(image_size: int) -> CLIP:
    cfg = clip_model_config(get_teacher_spec("tiny_clip"))
    vision = {**cfg["vision_cfg"], "image_size": image_size}
    return CLIP(cfg["embed_dim"], vision, TINY_TEXT, quick_gelu=cfg["quick_gelu"]).eval()


def test_clip_targets_equal_open_clip_tokens_before_projection(images):
    teacher = build_teacher("tiny_clip", pretrained=False, layers=(1,))
    out = teacher(images)
    assert out["cls"].shape == (2, 32) and out["patch"].shape == (2, 4, 32)
    assert out["layers"][1].shape == (2, 5, 32)
    assert isinstance(teacher.model.transformer.resblocks[0].mlp.gelu, QuickGELU)

    ref = _open_clip_model(28)
    ref.visual.load_state_dict(teacher.model.state_dict())
    ref.visual.output_tokens = True
    with torch.no_grad():
        pooled, tokens = ref.visual(images)
    torch.testing.assert_close(out["patch"], tokens, rtol=0, atol=0)
    # open_clip pools the class token after ln_post, then projects: undo nothing, redo the proj.
    torch.testing.assert_close(out["cls"] @ ref.visual.proj, pooled)


def test_whole_clip_checkpoint_loads_vision_tower_only(tmp_path, images):
    ref = _open_clip_model(28)
    torch.save(ref.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    teacher = build_teacher("tiny_clip", weights=tmp_path / "open_clip_pytorch_model.bin")
    ref.visual.output_tokens = True
    with torch.no_grad():
        _, tokens = ref.visual(images)
    assert torch.equal(teacher(images)["patch"], tokens)


def test_clip_position_embedding_resampled_from_native_size(tmp_path):
    ref = _open_clip_model(56)  # a 4×4 grid of positions in the file
    torch.save(ref.state_dict(), tmp_path / "w.pt")
    teacher = build_teacher("tiny_clip", weights=tmp_path / "w.pt", image_size=28)
    assert teacher.model.positional_embedding.shape == (5, 32)
    assert teacher(torch.zeros(1, 3, 28, 28))["patch"].shape == (1, 4, 32)


def test_shipped_clip_configs_are_quickgelu():
    for name in ("clip_b16", "clip_l14"):
        cfg = open_clip.get_model_config(get_teacher_spec(name).arch)
        assert cfg["quick_gelu"] is True
