"""A distilled backbone for use elsewhere, checked after it is written.

``timm`` (the default): a timm model folder, ``model.safetensors`` + ``config.json``;
``timm.create_model("local-dir:OUT", pretrained=True)`` rebuilds it with the exact
architecture arguments and loads the weights. ``onnx``: ``model.onnx`` with a dynamic batch
(``onnx_model.py``), plus the same ``config.json``. The config carries the normalisation the
student was trained with (the teacher's mean/std). The mask token is training-only; the
distillation heads are written beside the timm backbone, and go into the ONNX graph on request.

Every export is read back the way its users will read it (timm.create_model, onnxruntime) and
compared with the PyTorch student on sample inputs; a difference above the tolerance is an
error, not a warning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from proteus.common.models.students import STUDENT_STYLES, set_norm_eps
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.version import __version__
from proteus.evaluate.check import DEFAULT_TOLERANCE, ExportCheck, compare, sample_images
from proteus.evaluate.models import TrainedStudent, load_trained_student
from proteus.evaluate.onnx_model import write_onnx

FORMATS = ("timm", "onnx")


@dataclass(frozen=True)
class ExportResult:
    out: Path
    files: tuple[str, ...]
    check: ExportCheck


def run_export(
    checkpoint: Path,
    out: Path,
    ema: bool | None = None,
    *,
    fmt: str = "timm",
    heads: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportResult:
    """``heads`` (onnx only): also output each teacher's head projections."""
    if fmt not in FORMATS:
        raise ProteusError(f"--format {fmt}: one of {', '.join(FORMATS)}")
    if heads and fmt != "onnx":
        raise ProteusError("--heads: only with --format onnx (timm exports write the heads beside)")
    if not tolerance > 0:
        raise ProteusError(f"--tolerance {tolerance}: must be above 0")
    trained = load_trained_student(checkpoint, ema)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # First: timm rebuilds the model from it when the export is read back.
        (out / "config.json").write_text(json.dumps(_config(trained, fmt), indent=2) + "\n")
        if fmt == "timm":
            files, check = _write_timm(trained, out, tolerance)
        else:
            files, check = write_onnx(trained, out / "model.onnx", heads, tolerance)
    except OSError as exc:
        raise ProteusError(f"--out {out}: cannot write ({exc.strerror or exc})") from exc
    return ExportResult(out, (*files, "config.json"), check)


def _write_timm(trained: TrainedStudent, out: Path, tolerance: float):
    backbone = trained.student.backbone
    tensors = {k: v.contiguous() for k, v in backbone.state_dict().items()}
    save_file(tensors, str(out / "model.safetensors"))
    files = ["model.safetensors"]
    # Teacher i's heads under "i." (the order of proteus.teachers in config.json); for a
    # --standardize run also "i.stats.<target>.mean/std": prediction × std + mean is in
    # the teacher's units.
    heads = {
        f"{i}.{k}": v.contiguous()
        for i, h in enumerate(trained.heads)
        for k, v in h.state_dict().items()
    }
    for i in range(len(trained.heads)):
        stats = trained.stats(i)
        if stats is None:
            continue
        for name in stats.mean:
            heads[f"{i}.stats.{name}.mean"] = stats.mean[name].contiguous()
            heads[f"{i}.stats.{name}.std"] = stats.std[name].contiguous()
    if heads:
        save_file(heads, str(out / "proteus_heads.safetensors"))
        files.append("proteus_heads.safetensors")
    return tuple(files), check_timm_export(trained, out, tolerance)


def check_timm_export(trained: TrainedStudent, out: Path, tolerance: float) -> ExportCheck:
    """Rebuild the folder with timm alone and compare its forward_features with ours."""
    import timm

    reloaded: Any = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    eps = _norm_eps(trained)
    if eps is not None:  # what timm's arguments cannot say (config.json: proteus.norm_eps)
        set_norm_eps(reloaded, eps)
    ours: Any = trained.student.backbone.eval()  # timm models: forward_features exists
    images = sample_images(2, trained.student.image_size)
    with torch.no_grad():
        theirs, mine = reloaded.forward_features(images), ours.forward_features(images)
    return compare("timm.create_model", [theirs], [mine], tolerance, (2,))


def _config(trained: TrainedStudent, fmt: str) -> dict[str, Any]:
    student, saved = trained.student, trained.checkpoint
    size = student.image_size
    return {
        "architecture": student.spec.arch,
        "num_classes": 0,
        "num_features": student.summary_dim,
        "model_args": dict(student.arch_kwargs),
        "pretrained_cfg": {
            "input_size": [3, size, size],
            # A ViT's position embeddings fix its size (timm passes it as img_size); a
            # convnet takes any size, and its constructor has no img_size.
            "fixed_input_size": student.spec.kind == "vit",
            "interpolation": "bilinear",
            "crop_pct": 0.875,
            "mean": list(trained.mean),
            "std": list(trained.std),
            "num_classes": 0,
        },
        "proteus": {
            "version": __version__,
            "format": fmt,
            "student": saved.student_name,
            "student_kind": student.spec.kind,
            "grid": list(student.grid),
            "weights": trained.evaluated_weights,
            "teacher": saved.teachers[0].source.teacher,
            "teachers": [t.source.teacher for t in saved.teachers],
            "step": saved.step,
            # Set every LayerNorm's eps to this after timm.create_model (timm builds them with
            # 1e-6 and has no argument for it); null: timm's own.
            "norm_eps": _norm_eps(trained),
        },
    }


def _norm_eps(trained: TrainedStudent) -> float | None:
    style = STUDENT_STYLES.get(trained.checkpoint.student_style)
    return style.norm_eps if style is not None and trained.student.spec.kind == "vit" else None
