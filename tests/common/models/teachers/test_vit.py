"""DINOv2 and SynCLR teachers (timm ViTs): shapes, equality with timm, weight files."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from proteus.common.models.teachers import build_teacher
from proteus.common.runtime.errors import ProteusError


@pytest.mark.parametrize("name, prefix", [("tiny_dinov2", 1), ("tiny_dinov2_reg", 5)])
def test_dinov2_matches_timm_forward_features(name, prefix, images):
    teacher = build_teacher(name, pretrained=False, layers=(0, -1))
    out = teacher.forward_features(images)
    assert out["cls"].shape == (2, 32)
    assert out["patch"].shape == (2, 4, 32)
    assert sorted(out["layers"]) == [0, 2]
    assert all(t.shape == (2, 5, 32) for t in out["layers"].values())

    # timm's own model of the same architecture, with the teacher's weights
    arch = teacher.spec.arch
    ref = timm.create_model(arch, num_classes=0, img_size=28, **teacher.spec.arch_kwargs).eval()
    ref.load_state_dict(teacher.model.state_dict())
    with torch.no_grad():
        x_norm = ref.forward_features(images)
    assert ref.num_prefix_tokens == prefix
    torch.testing.assert_close(out["cls"], x_norm[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(out["patch"], x_norm[:, prefix:], rtol=0, atol=0)
    # The last layer goes through the final norm, so it is exactly [cls; patches].
    last = torch.cat([out["cls"][:, None], out["patch"]], dim=1)
    torch.testing.assert_close(out["layers"][2], last)


def test_teacher_is_frozen_and_stays_in_eval(images):
    teacher = build_teacher("tiny_dinov2", pretrained=False)
    teacher.train()
    assert not teacher.training and not teacher.model.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not teacher.forward_features(images)["cls"].requires_grad


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_file_round_trip(tmp_path, images, suffix):
    source = build_teacher("tiny_dinov2_reg", pretrained=False)
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in source.model.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    loaded = build_teacher("tiny_dinov2_reg", weights=path)
    assert loaded.weights_source == f"file:{path}"
    a, b = source(images), loaded(images)
    assert torch.equal(a["cls"], b["cls"]) and torch.equal(a["patch"], b["patch"])


def test_weights_file_in_meta_release_format(tmp_path, images):
    """DINOv2 as Meta releases it: SwiGLU-free blocks, a mask_token, nested and DDP-wrapped."""
    source = build_teacher("tiny_dinov2", pretrained=False)
    state = {f"module.{k}": v for k, v in source.model.state_dict().items()}
    state["module.mask_token"] = torch.zeros(1, 32)
    torch.save({"model": state, "epoch": 3}, tmp_path / "release.pth")
    loaded = build_teacher("tiny_dinov2", weights=tmp_path / "release.pth")
    assert torch.equal(source(images)["patch"], loaded(images)["patch"])


def test_weights_resampled_to_another_image_size(tmp_path):
    source = build_teacher("tiny_dinov2", pretrained=False, image_size=56)
    save_file(source.model.state_dict(), tmp_path / "w.safetensors")
    teacher = build_teacher("tiny_dinov2", weights=tmp_path / "w.safetensors", image_size=28)
    assert teacher.grid == (2, 2)
    assert teacher(torch.zeros(1, 3, 28, 28))["patch"].shape == (1, 4, 32)


def test_synclr_release_checkpoint(tmp_path):
    source = build_teacher("tiny_synclr", pretrained=False)
    state = {f"module.visual.{k}": v for k, v in source.model.state_dict().items()}
    state["module.visual.head.weight"] = torch.zeros(8, 32)  # projection head, not a target
    torch.save({"model": state}, tmp_path / "synclr_vit_b_16.pth")
    loaded = build_teacher("tiny_synclr", weights=tmp_path / "synclr_vit_b_16.pth")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(source(x)["cls"], loaded(x)["cls"])
    assert loaded.model.blocks[0].norm1.eps == 1e-6
    assert loaded.model.blocks[0].attn.qkv.bias is not None


def test_synclr_without_weights_names_the_fix():
    with pytest.raises(ProteusError, match="--weights"):
        build_teacher("tiny_synclr")


def test_weights_for_another_architecture_are_refused(tmp_path):
    save_file({"foo.weight": torch.zeros(2)}, tmp_path / "w.safetensors")
    with pytest.raises(ProteusError, match=r"do not fit.*missing"):
        build_teacher("tiny_dinov2", weights=tmp_path / "w.safetensors")


def test_wrong_input_shape_is_reported():
    teacher = build_teacher("tiny_dinov2", pretrained=False)
    with pytest.raises(ValueError, match=r"expects \(B, 3, 28, 28\)"):
        teacher(torch.zeros(1, 3, 32, 32))
