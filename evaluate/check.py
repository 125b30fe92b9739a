"""Reading an export back: the exported model against the PyTorch student on sample inputs,
within a tolerance (``export.py`` for timm's format, ``onnx_model.py`` for ONNX)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from proteus.common.runtime.errors import ProteusError

# Relative to the largest output magnitude: float32 kernels differ in summation order.
DEFAULT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportCheck:
    """The read-back comparison: max |exported − PyTorch| over every output and sample."""

    reader: str  # what read it back: "timm.create_model" or "onnxruntime …"
    max_abs_diff: float
    allowed: float  # tolerance × max(1, max |PyTorch output|)
    batches: tuple[int, ...]  # the batch sizes compared (two for ONNX: the batch is dynamic)

    def describe(self) -> str:
        return (
            f"{self.reader}: max |difference| {self.max_abs_diff:.3g} "
            f"(allowed {self.allowed:.3g}; batches {', '.join(map(str, self.batches))})"
        )


def sample_images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Normalised-looking inputs: the check covers the values a real image produces."""
    generator = torch.Generator().manual_seed(seed + batch)
    return torch.randn(batch, 3, size, size, generator=generator)


def compare(
    reader: str,
    exported: list[Any],
    reference: list[torch.Tensor],
    tolerance: float,
    batches: tuple[int, ...],
) -> ExportCheck:
    diffs, scale = [torch.zeros(())], 1.0
    for got, want in zip(exported, reference, strict=True):
        want = want.detach().float().cpu()
        got = torch.as_tensor(got).float()
        if tuple(got.shape) != tuple(want.shape):
            raise ProteusError(
                f"export check: {reader} gave shape {tuple(got.shape)}, PyTorch {tuple(want.shape)}"
            )
        diffs.append((got - want).abs().max())
        scale = max(scale, float(want.abs().max()))
    diff = float(torch.stack(diffs).max())  # torch's max keeps a NaN (Python's max drops it)
    check = ExportCheck(reader, diff, tolerance * scale, batches)
    if not diff <= check.allowed:  # also catches NaN
        raise ProteusError(
            f"export check failed: {check.describe()}; the exported model does not reproduce "
            "the student (raise --tolerance only if the difference is expected)"
        )
    return check
