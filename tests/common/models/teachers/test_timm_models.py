"""effnet_lite0 (the offline real teacher) and timm:<model> CNN teachers."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from proteus.common.models.teachers import build_teacher, get_teacher_spec, register_teacher
from proteus.common.runtime.errors import ProteusError

# A generated crossword grid: white cells with black lines and some black squares. Real
# ImageNet weights call it class 918, "crossword puzzle"; random weights would not.
CROSSWORD = 918
CLASSIFY = """
import torch
from proteus.common.models.teachers import build_teacher
t = build_teacher("effnet_lite0")
yy, xx = torch.meshgrid(torch.linspace(0, 1, 224), torch.linspace(0, 1, 224), indexing="ij")
cell_x, cell_y = (xx * 15).floor(), (yy * 15).floor()
blocked = (cell_x * 7 + cell_y * 3) % 5 == 0
open_cell = ((xx * 15) % 1 > 0.08) & ((yy * 15) % 1 > 0.08)
img = (open_cell & ~blocked).float().expand(3, -1, -1)
mean, std = torch.tensor(t.spec.mean)[:, None, None], torch.tensor(t.spec.std)[:, None, None]
out = t((img[None] - mean) / std)
probs = t.model.get_classifier()(out["cls"]).softmax(-1)[0]
print(int(probs.argmax()), float(probs.max()))
"""


def _classify() -> tuple[int, float]:
    run = subprocess.run(
        [sys.executable, "-c", CLASSIFY], capture_output=True, text=True, check=True
    )
    label, prob = run.stdout.split()
    return int(label), float(prob)


def test_effnet_lite0_packaged_weights_give_a_stable_class():
    first, second = _classify(), _classify()  # two separate processes
    assert first == second
    label, prob = first
    assert label == CROSSWORD, f"class {label} (p={prob:.3f})"
    assert prob > 0.5


def test_effnet_lite0_outputs():
    teacher = build_teacher("effnet_lite0", layers=(2, -1))
    out = teacher(torch.zeros(2, 3, 224, 224))
    assert out["cls"].shape == (2, 1280) and out["patch"].shape == (2, 49, 1280)
    assert out["layers"][2].shape == (2, 1 + 28 * 28, 40)
    assert out["layers"][4].shape == (2, 1 + 7 * 7, 320)
    torch.testing.assert_close(out["cls"], out["patch"].mean(1))  # pooled pre-logits


def test_effnet_lite0_accepts_a_timm_format_file(tmp_path):
    source = build_teacher("effnet_lite0", image_size=64)
    save_file(source.model.state_dict(), tmp_path / "w.safetensors")
    loaded = build_teacher("effnet_lite0", weights=tmp_path / "w.safetensors", image_size=64)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(source(x)["cls"], loaded(x)["cls"])


def test_timm_cnn_teacher_and_weights_round_trip(tmp_path):
    teacher = build_teacher("timm:resnet18", pretrained=False, image_size=64, layers=(-1,))
    spec = get_teacher_spec("timm:resnet18")
    assert (spec.embed_dim, spec.patch_size, spec.depth) == (512, 32, 5)
    x = torch.randn(2, 3, 64, 64)
    out = teacher(x)
    assert out["cls"].shape == (2, 512) and out["patch"].shape == (2, 4, 512)
    assert out["layers"][4].shape == (2, 5, 512)
    save_file(teacher.model.state_dict(), tmp_path / "r18.safetensors")
    loaded = build_teacher("timm:resnet18", weights=tmp_path / "r18.safetensors", image_size=64)
    assert torch.equal(loaded(x)["patch"], out["patch"])


def test_timm_vit_goes_through_the_vit_path():
    teacher = build_teacher("timm:vit_tiny_patch16_224", pretrained=False, image_size=32)
    out = teacher(torch.zeros(1, 3, 32, 32))
    assert out["patch"].shape == (1, 4, 192)


def test_unknown_timm_model():
    with pytest.raises(ProteusError, match="unknown timm model"):
        get_teacher_spec("timm:not_a_model_xyz")


def test_vit_without_class_token_gets_a_mean_token_in_layers():
    spec = dataclasses.replace(
        get_teacher_spec("tiny_dinov2"),
        name="tiny_no_cls",
        arch_kwargs={
            "embed_dim": 32,
            "depth": 2,
            "num_heads": 2,
            "class_token": False,
            "global_pool": "avg",
        },
        depth=2,
    )
    register_teacher(spec)
    out = build_teacher("tiny_no_cls", pretrained=False, layers=(0,))(torch.zeros(1, 3, 28, 28))
    assert out["patch"].shape == (1, 4, 32) and out["layers"][0].shape == (1, 5, 32)
    torch.testing.assert_close(out["layers"][0][:, 0], out["layers"][0][:, 1:].mean(1))


def test_timm_token_model_that_is_not_a_vit_is_a_clear_error():
    teacher = build_teacher("timm:eva02_tiny_patch14_224", pretrained=False, image_size=224)
    with pytest.raises(ProteusError, match=r"not a \(B, C, H, W\) map"):
        teacher(torch.zeros(1, 3, 224, 224))
