"""Weight files are untrusted input: tensors only, clear errors for everything else."""

from __future__ import annotations

import os

import pytest
import torch

from proteus.common.models.teachers import build_teacher
from proteus.common.models.teachers.weights import load_weights_file
from proteus.common.runtime.errors import ProteusError


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"weight": torch.zeros(1), "x": _Exploit(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(ProteusError, match="refused to load"):
        build_teacher("tiny_dinov2", weights=tmp_path / "evil.pt")
    assert not marker.exists()


def test_missing_file(tmp_path):
    with pytest.raises(ProteusError, match="no such file"):
        load_weights_file(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("name", ["garbage.pt", "garbage.safetensors"])
def test_unreadable_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"not a checkpoint at all")
    with pytest.raises(ProteusError, match="not a readable"):
        load_weights_file(tmp_path / name)


def test_file_without_tensors(tmp_path):
    torch.save({"epoch": 3, "args": {"lr": 0.1}}, tmp_path / "meta.pt")
    with pytest.raises(ProteusError, match="no state dict found"):
        load_weights_file(tmp_path / "meta.pt")


def test_prefixes_select_the_vision_tower(tmp_path):
    torch.save(
        {"state_dict": {"module.visual.a": torch.ones(1), "module.text.b": torch.ones(1)}},
        tmp_path / "w.pt",
    )
    assert list(load_weights_file(tmp_path / "w.pt", ("visual.",))) == ["a"]
