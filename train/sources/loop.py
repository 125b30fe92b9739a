"""A teacher in the training loop: built once, run on each step's rendered pixels.

Online training (``online.py``) scores every sample with it; the hybrid (``hybrid.py``)
scores the fresh share of a cached run's batches with it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from proteus.common.models.teachers import Teacher, build_teacher


class LoopTeacher:
    """The teacher on the training device, in eval mode, in bfloat16 on a GPU."""

    def __init__(
        self,
        name: str,
        *,
        weights: Path | None,
        image_size: int | None,
        layers: tuple[int, ...],
        device: torch.device,
    ):
        self.name = name
        self.teacher: Teacher = build_teacher(
            name, image_size=image_size, layers=layers, weights=weights
        )
        # Hashed before it moves: the same bytes extraction hashes.
        self.weights_sha256 = self.teacher.weights_sha256()
        self.teacher.to(device)
        self.precision = "bfloat16" if device.type == "cuda" else "float32"

    @property
    def image_size(self) -> int:
        return self.teacher.image_size

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every target it gives: name -> per-view shape."""
        size = self.image_size
        device = next(self.teacher.parameters()).device
        probe = self.forward(torch.zeros(1, 3, size, size, device=device))
        return {k: tuple(v.shape[1:]) for k, v in probe.items()}

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The targets by name (cls, patch, layer_<i>) as float32, on the teacher's device."""
        with torch.autocast(
            pixels.device.type, torch.bfloat16, enabled=self.precision == "bfloat16"
        ):
            out = self.teacher(pixels)
        targets = {"cls": out["cls"], "patch": out["patch"]}
        targets |= {f"layer_{i}": layer for i, layer in out["layers"].items()}
        return {k: v.float() for k, v in targets.items()}
