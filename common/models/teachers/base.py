"""The module every teacher is: eval mode, no grad, one forward contract."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from proteus.common.models.teachers.spec import TeacherBuild, TeacherOutput, TeacherSpec
from proteus.common.runtime.errors import ProteusError


def resolve_layers(layers: tuple[int, ...], depth: int, name: str) -> tuple[int, ...]:
    """Turn user layer indices (negative = from the end) into sorted, unique block indices."""
    out = set()
    for layer in layers:
        if not -depth <= layer < depth:
            raise ProteusError(
                f"--layers {layer}: out of range for {name}, which has {depth} blocks "
                f"(use 0..{depth - 1}, or -1 for the last)"
            )
        out.add(layer % depth)
    return tuple(sorted(out))


class Teacher(nn.Module):
    """A frozen feature extractor returning :class:`TeacherOutput`.

    Subclasses implement ``_features``; this class checks inputs, freezes the model and keeps
    the facts the cache manifest records (input size, grid, normalisation, weight source).
    """

    def __init__(self, spec: TeacherSpec, request: TeacherBuild, model: nn.Module):
        super().__init__()
        self.spec = spec
        self.image_size = request.image_size
        self.layers = resolve_layers(request.layers, spec.depth, spec.name)
        self.registers = request.registers
        self.model = model
        self.weights_source = _describe_source(spec, request)
        self.eval().requires_grad_(False)
        if request.registers and not self.num_registers:
            raise ProteusError(f"--registers: {spec.name} has no register tokens to store")

    @property
    def num_registers(self) -> int:
        """Register tokens the model has (returned as ``registers`` when asked for)."""
        return 0

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.spec.patch_size
        return side, side

    @property
    def num_patches(self) -> int:
        h, w = self.grid
        return h * w

    def weights_sha256(self) -> str:
        """sha256 over every parameter and buffer (name, dtype, shape, bytes), in name order.

        Hashes what was loaded rather than a file, so hub weights, a local file and a
        re-saved copy of the same tensors all give the same id.
        """
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            value = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}\n".encode())
            digest.update(value.reshape(-1).view(torch.uint8).numpy().data)
        return digest.hexdigest()

    def train(self, mode: bool = True) -> Teacher:
        # A teacher never leaves eval mode: dropout or batch-norm updates would change targets.
        return super().train(False)

    @torch.no_grad()
    def forward_features(self, x: torch.Tensor) -> TeacherOutput:
        expected = (3, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"{self.spec.name} expects (B, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}"
            )
        return self._features(x)

    forward = forward_features

    def _features(self, x: torch.Tensor) -> TeacherOutput:
        raise NotImplementedError


def _describe_source(spec: TeacherSpec, request: TeacherBuild) -> str:
    if request.weights is not None:
        return f"file:{request.weights}"
    return spec.source if request.pretrained else "random-init"
