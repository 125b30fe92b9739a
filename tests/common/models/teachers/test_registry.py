"""The registry: names, records that match their architectures, layer and size checks."""

from __future__ import annotations

import pytest
import timm
import torch

from proteus.common.models.teachers import build_teacher, get_teacher_spec, list_teachers
from proteus.common.models.teachers.clip import clip_model_config
from proteus.common.runtime.errors import ProteusError

SHIPPED = {
    "dinov2_s",
    "dinov2_b",
    "dinov2_l",
    "dinov2_g",
    "dinov2_s_reg",
    "dinov2_b_reg",
    "dinov2_l_reg",
    "dinov2_g_reg",
    "clip_b16",
    "clip_l14",
    "synclr_b16",
    "synclr_l14",
    "effnet_lite0",
}


def test_shipped_teachers_are_registered():
    assert {s.name for s in list_teachers()} >= SHIPPED


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_record_matches_its_architecture(name):
    """dim, depth and patch in the table are what the model really has (built on meta)."""
    spec = get_teacher_spec(name)
    with torch.device("meta"):
        if spec.family == "clip":
            cfg = clip_model_config(spec)["vision_cfg"]
            dim, depth, patch = cfg["width"], cfg["layers"], cfg["patch_size"]
        else:
            model = timm.create_model(spec.arch, num_classes=0)
            dim = model.num_features
            if spec.family == "effnet":
                depth, patch = len(model.feature_info), model.feature_info[-1]["reduction"]
            else:
                depth, patch = len(model.blocks), model.patch_embed.patch_size[0]
    assert (dim, depth, patch) == (spec.embed_dim, spec.depth, spec.patch_size)
    assert spec.image_size == 224 and len(spec.mean) == len(spec.std) == 3


def test_dinov2_at_224_gives_a_16x16_grid():
    spec = get_teacher_spec("dinov2_g")
    assert spec.image_size // spec.patch_size == 16
    assert spec.arch == "vit_giant_patch14_dinov2.lvd142m"
    assert get_teacher_spec("dinov2_s_reg").arch == "vit_small_patch14_reg4_dinov2.lvd142m"


def test_unknown_teacher_lists_known_names():
    with pytest.raises(ProteusError) as err:
        get_teacher_spec("dinov3_x")
    message = str(err.value)
    assert "dinov3_x" in message and "dinov2_g" in message and "effnet_lite0" in message
    assert "timm:<model>" in message


@pytest.mark.parametrize("layers", [(3,), (-4,), (100,)])
def test_layer_out_of_range_names_the_valid_range(layers):
    with pytest.raises(ProteusError, match=r"out of range for tiny_dinov2.*0\.\.2"):
        build_teacher("tiny_dinov2", pretrained=False, layers=layers)


def test_negative_and_repeated_layers_resolve():
    teacher = build_teacher("tiny_dinov2", pretrained=False, layers=(-1, 2, 0))
    assert teacher.layers == (0, 2)


def test_image_size_must_be_a_multiple_of_the_patch():
    with pytest.raises(ProteusError, match="not a multiple of tiny_dinov2's patch size 14"):
        build_teacher("tiny_dinov2", pretrained=False, image_size=30)
