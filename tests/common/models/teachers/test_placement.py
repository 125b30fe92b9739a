"""Spreading a teacher's blocks over several devices (7B-class teachers on small GPUs).

Only CPUs here: the blocks are placed on two CPU "devices", which runs every hook (the inputs
of every block, of the final norm, of RoPE-taking blocks) and checks nothing changes."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from proteus.common.models.teachers import build_teacher, get_teacher_spec, register_teacher
from proteus.common.models.teachers.placement import spread_layers, teacher_devices
from proteus.common.runtime.errors import ProteusError


@pytest.mark.parametrize("real", ["dinov3_7b", "dinov2_g", "siglip2_b16"])
def test_spread_teacher_gives_the_same_targets(real):
    spec = get_teacher_spec(real)
    tiny = {"embed_dim": 32, "depth": 4, "num_heads": 2}
    name = f"spread_{real}"
    register_teacher(replace(spec, name=name, arch_kwargs=tiny, image_size=2 * spec.patch_size))
    torch.manual_seed(0)
    teacher = build_teacher(name, pretrained=False, layers=(1, 3))
    x = torch.randn(2, 3, teacher.image_size, teacher.image_size)
    before = teacher(x)
    placed = spread_layers(teacher.model, [torch.device("cpu"), torch.device("cpu")])
    assert len(placed) == 4
    hooked = [b for b in teacher.model.blocks if b._forward_pre_hooks]
    assert len(hooked) == 4 and teacher.model.norm._forward_pre_hooks
    after = teacher(x)
    for key in ("cls", "patch"):
        torch.testing.assert_close(after[key], before[key])
    for layer in (1, 3):
        torch.testing.assert_close(after["layers"][layer], before["layers"][layer])


def test_refusals():
    assert teacher_devices(1, 0, "cpu") == []
    with pytest.raises(ProteusError, match="spreading needs CUDA GPUs"):
        teacher_devices(2, 0, "cpu")
    with pytest.raises(ProteusError, match="only models with a list of blocks"):
        spread_layers(torch.nn.Conv2d(3, 3, 1), [torch.device("cpu")])
