"""Students: the shipped records, the mask token, timm:<vit>, and clear refusals."""

from __future__ import annotations

import pytest
import torch

from proteus.common.errors import ProteusError
from proteus.common.students import build_student, get_student_spec, list_students


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
    with pytest.raises(ProteusError, match="not a ViT"):
        get_student_spec("timm:resnet18")
    with pytest.raises(ProteusError, match="timm has no model"):
        get_student_spec("timm:no_such_net")
    with pytest.raises(ProteusError, match=r"unknown; known students: .*vit_s14"):
        get_student_spec("vit_xxl")
    with pytest.raises(ProteusError, match=r"image size 28 .* not a multiple of its patch size 16"):
        build_student("vit_s16", 28)
