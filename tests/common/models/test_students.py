"""Students: the shipped records, the mask token, timm:<vit>, and clear refusals."""

from __future__ import annotations

import pytest
import torch

from proteus.common.models.students import (
    ConvStudent,
    build_student,
    get_student_spec,
    list_students,
)
from proteus.common.runtime.errors import ProteusError


@pytest.mark.parametrize(
    "name, dim, depth, patch",
    [
        ("vit_ti14", 192, 12, 14),
        ("vit_s14", 384, 12, 14),
        ("vit_b14", 768, 12, 14),
        ("vit_l14", 1024, 24, 14),
        ("vit_ti16", 192, 12, 16),
        ("vit_s16", 384, 12, 16),
        ("vit_b16", 768, 12, 16),
        ("vit_l16", 1024, 24, 16),
    ],
)
def test_shipped_students_have_their_shapes(name, dim, depth, patch):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        student = build_student(name, 224)
    assert (student.embed_dim, student.depth, student.spec.patch_size) == (dim, depth, patch)
    assert student.grid == (224 // patch,) * 2 and student.mask_token.shape == (1, 1, dim)


def test_registry_lists_students():
    names = [s.name for s in list_students()]
    assert {"vit_s14", "vit_b16"} <= set(names)


def test_mask_token_replaces_masked_patch_embeddings():
    torch.manual_seed(0)
    student = build_student("tiny_vit14", 28).eval()
    x = torch.randn(2, 3, 28, 28)
    mask = torch.tensor([[True, False, False, True], [False] * 4])
    out = student(x, mask=mask)
    # The same by hand: patch embeddings of masked positions swapped for the mask token.
    vit = student.vit
    tokens = vit.patch_embed(x)
    tokens[mask] = student.mask_token[0, 0]
    manual = vit.norm(vit.blocks(vit.norm_pre(vit._pos_embed(tokens))))
    torch.testing.assert_close(out["patch"], manual[:, vit.num_prefix_tokens :])
    torch.testing.assert_close(out["cls"], manual[:, 0])
    # An all-False mask is the clean pass; the unmasked sample is unchanged by the other's mask.
    clean = student(x)
    torch.testing.assert_close(
        student(x, mask=torch.zeros(2, 4, dtype=torch.bool))["cls"], clean["cls"]
    )
    torch.testing.assert_close(out["cls"][1], clean["cls"][1])
    assert not torch.allclose(out["cls"][0], clean["cls"][0])


def test_clean_output_equals_timm_forward_features():
    torch.manual_seed(0)
    student = build_student("tiny_vit14", 28).eval()
    x = torch.randn(1, 3, 28, 28)
    torch.testing.assert_close(student(x)["cls"], student.vit.forward_features(x)[:, 0])


def test_intermediate_layers_are_returned_with_the_global_token_first():
    student = build_student("tiny_vit14", 28).eval()
    out = student(torch.randn(1, 3, 28, 28), layers=(0,))
    assert out["layers"][0].shape == (1, 5, 32)


def test_timm_vits_and_refusals():
    spec = get_student_spec("timm:vit_tiny_patch16_224")
    assert (spec.patch_size, spec.embed_dim) == (16, 192)
    with pytest.raises(ProteusError, match="timm has no model"):
        get_student_spec("timm:no_such_net")
    with pytest.raises(ProteusError, match=r"close names: resnet18\b"):
        get_student_spec("timm:resnet_18")
    with pytest.raises(ProteusError, match=r"unknown; .*known students: .*vit_s14"):
        get_student_spec("vit_xxl")
    with pytest.raises(ProteusError, match=r"did you mean resnet50"):
        get_student_spec("resnet5O")
    with pytest.raises(ProteusError, match=r"image size 28 .* not a multiple of its patch size 16"):
        build_student("vit_s16", 28)


# ----------------------------------------------------------------------- convnet students


SHIPPED_CONVNETS = (
    "resnet18",
    "resnet50",
    "convnext_t",
    "convnext_s",
    "efficientnet_b0",
    "mobilenetv4_s",
    "fastvit_t8",
    "efficientvit_b1",
)


@pytest.mark.parametrize("name", SHIPPED_CONVNETS)
def test_shipped_convnet_records_match_their_models(name):
    spec = get_student_spec(name)
    with torch.device("meta"):
        student = build_student(name, 224, grid=(16, 16))
    assert isinstance(student, ConvStudent)
    assert student.dense_dim == spec.embed_dim
    assert 224 // student.features.native_grid[0] == spec.patch_size
    assert student.grid == (16, 16) and student.depth == len(student.features.stage_dims)
    assert spec.kind == "convnet" and name in {s.name for s in list_students()}


def test_any_timm_backbone_with_a_feature_map_is_a_convnet_student():
    spec = get_student_spec("timm:resnet18")
    assert (spec.kind, spec.patch_size, spec.embed_dim) == ("convnet", 32, 512)
    # A hierarchical transformer (NHWC final features) takes its last stage, in NCHW.
    with torch.device("meta"):
        swin = build_student("timm:swin_tiny_patch4_window7_224", 224, grid=(16, 16))
    assert swin.dense_dim == 768 and not swin.features.dense_from_final


def test_a_model_without_a_feature_map_is_refused_with_close_names():
    import timm
    from timm.models import register_model

    class Pooled(torch.nn.Module):  # a backbone that only ever returns a vector
        def __init__(self, num_classes=0, **_):
            super().__init__()
            self.fc = torch.nn.Linear(3, 8)

        def forward(self, x):
            return self.fc(x.mean((2, 3)))

    def proteus_test_pooled(pretrained=False, **kwargs):
        return Pooled(**kwargs)

    if not timm.is_model("proteus_test_pooled"):
        register_model(proteus_test_pooled)
    with pytest.raises(ProteusError, match=r"timm:proteus_test_pooled: has no spatial feature map"):
        get_student_spec("timm:proteus_test_pooled")


def _convnet(name="tiny_resnet", grid=(4, 4)) -> ConvStudent:
    torch.manual_seed(0)
    student = build_student(name, 64, grid=grid).eval()
    assert isinstance(student, ConvStudent)
    return student


def test_convnet_summary_and_dense_tokens():
    student = _convnet()
    x = torch.randn(2, 3, 64, 64)
    out = student(x, layers=(1, 3))
    net = student.net
    final, stages = net.forward_intermediates(x)
    # The summary is timm's own pooled features; the dense tokens the last map on the grid.
    torch.testing.assert_close(out["cls"], net.forward_head(final, pre_logits=True))
    assert final.shape[-2:] == (2, 2) and out["patch"].shape == (2, 16, student.dense_dim)
    upsampled = torch.nn.functional.interpolate(final, size=(4, 4), mode="bilinear")
    torch.testing.assert_close(out["patch"], upsampled.flatten(2).transpose(1, 2))
    # Hints: the stage's mean first, then its map on the grid, at the stage's own width.
    for stage in (1, 3):
        tokens = out["layers"][stage]
        assert tokens.shape == (2, 17, student.block_dim(stage))
        torch.testing.assert_close(tokens[:, 0], stages[stage].mean((2, 3)))
    # viz pictures the map on its own 2×2 grid, not the resampled one.
    dense, grid = student.native_dense(out)
    assert grid == (2, 2) and dense.shape == (2, 4, student.dense_dim)


def test_convnet_masking_paints_the_hidden_cells_with_the_mask_colour():
    student = _convnet(grid=(2, 2))
    with torch.no_grad():
        student.mask_token.fill_(0.5)
    x = torch.randn(2, 3, 64, 64)
    mask = torch.tensor([[True, False, False, True], [False] * 4])
    painted = x.clone()
    painted[0, :, :32, :32] = 0.5  # cell (0, 0)
    painted[0, :, 32:, 32:] = 0.5  # cell (1, 1)
    torch.testing.assert_close(student(x, mask=mask)["cls"], student(painted)["cls"])
    # The unmasked sample is untouched (eval mode: BatchNorm does not mix samples).
    torch.testing.assert_close(student(x, mask=mask)["cls"][1], student(x)["cls"][1])
    assert not torch.allclose(student(x, mask=mask)["cls"][0], student(x)["cls"][0])


def test_convnet_grid_must_divide_the_image():
    with pytest.raises(ProteusError, match="whole number of the teacher's 5×5 grid"):
        build_student("tiny_resnet", 64, grid=(5, 5))
