"""The student as an ONNX graph with a dynamic batch, checked with onnxruntime.

Outputs, by name: ``summary`` (B, summary width: the class token, or a convnet's pooled
features), ``dense`` (B, rows·cols, width: the tokens the heads read, on the student's grid),
for a convnet also ``feature_map`` (B, C, h, w: its last map at its own stride, what a detector
neck takes), and with ``heads`` each teacher's projections into its space, ``t<i>_summary``
and ``t<i>_dense`` (1-based, the order of ``proteus.teachers`` in config.json), in the
teacher's units (a --standardize run's standardisation is undone in the graph).
The input ``images`` is (B, 3, size, size), normalised with config.json's mean/std.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from proteus.common.cache.stats import TargetStats
from proteus.common.models.heads import ProteusHeads
from proteus.common.models.students import Student
from proteus.common.runtime.errors import ProteusError
from proteus.evaluate.check import ExportCheck, compare, sample_images
from proteus.evaluate.models import TrainedStudent

OPSET = 18


class Deployed(nn.Module):
    """What the ONNX graph computes: the student's features, optionally through its heads."""

    def __init__(
        self, student: Student, heads: list[ProteusHeads], stats: list[TargetStats | None]
    ):
        """``stats``: per teacher, what its heads' outputs are mapped back with (a
        --standardize run's heads predict standardised targets)."""
        super().__init__()
        self.student = student
        self.heads = nn.ModuleList(heads)
        self.stats = stats
        self.convnet = student.spec.kind == "convnet"

    def output_names(self) -> list[str]:
        names = ["summary", "dense"] + (["feature_map"] if self.convnet else [])
        for i, heads in enumerate(self.heads, start=1):
            names += [f"t{i}_{part}" for part, head in self._projections(heads) if head is not None]
        return names

    @staticmethod
    def _projections(heads) -> list[tuple[str, nn.Module | None]]:
        # The dense projection is the feature head; a run without L_fea has only the patch head.
        return [("summary", heads.token_head), ("dense", heads.fea_head or heads.patch_head)]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.student(images)
        outputs = [out["cls"], out["patch"]] + ([out["feature_map"]] if self.convnet else [])
        for heads, stats in zip(self.heads, self.stats, strict=True):
            for part, head in self._projections(heads):
                if head is None:
                    continue
                name = "cls" if part == "summary" else "patch"
                projected = head(out[name])
                outputs.append(stats.restore(name, projected) if stats else projected)
        return tuple(outputs)


def write_onnx(
    trained: TrainedStudent, path: Path, heads: bool, tolerance: float
) -> tuple[tuple[str, ...], ExportCheck]:
    try:
        import onnxruntime
    except ImportError:
        raise ProteusError(
            "--format onnx needs onnx, onnxscript and onnxruntime: "
            "pip install 'proteus-distill[onnx]'"
        ) from None
    teachers = range(len(trained.heads)) if heads else range(0)
    model = Deployed(
        trained.student, [trained.heads[i] for i in teachers], [trained.stats(i) for i in teachers]
    ).eval()
    names = model.output_names()
    size = trained.student.image_size
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                model,
                (sample_images(2, size),),
                input_names=["images"],
                output_names=names,
                dynamic_shapes=({0: batch},),
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
    except Exception as exc:  # torch.export raises many kinds for an unsupported graph
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ProteusError(
            f"--format onnx: torch.onnx.export cannot export {trained.student.spec.arch} "
            f"({first}); the timm export (--format timm) still works"
        ) from exc
    if program is None:
        raise ProteusError("torch.onnx.export returned no program")
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got: list = []
    want: list[torch.Tensor] = []
    batches = (2, 3)  # a batch it was not traced with shows the batch is dynamic
    for b in batches:
        images = sample_images(b, size)
        got += session.run(names, {"images": images.numpy()})
        with torch.no_grad():
            want += list(model(images))
    version = onnxruntime.__version__
    return (path.name,), compare(f"onnxruntime {version}", got, want, tolerance, batches)
