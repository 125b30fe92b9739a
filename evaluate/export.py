"""A distilled backbone as a timm model folder: ``model.safetensors`` + ``config.json``.

``timm.create_model("local-dir:OUT", pretrained=True)`` rebuilds it with the exact
architecture arguments and loads the weights; the config also carries the normalisation the
student was trained with (the teacher's mean/std). The mask token and the distillation heads
are training-only and stay out of the backbone; the heads are written beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from proteus.common.errors import ProteusError
from proteus.common.version import __version__
from proteus.evaluate.models import load_trained_student


def run_export(checkpoint: Path, out: Path, ema: bool | None = None) -> Path:
    trained = load_trained_student(checkpoint, ema)
    student, saved = trained.student, trained.checkpoint
    spec = student.spec
    model_args = dict(student.arch_kwargs)
    size = student.image_size
    config = {
        "architecture": spec.arch,
        "num_classes": 0,
        "num_features": student.embed_dim,
        "model_args": model_args,
        "pretrained_cfg": {
            "input_size": [3, size, size],
            "fixed_input_size": True,
            "interpolation": "bilinear",
            "crop_pct": 0.875,
            "mean": list(trained.mean),
            "std": list(trained.std),
            "num_classes": 0,
        },
        "proteus": {
            "version": __version__,
            "student": saved.student_name,
            "weights": trained.evaluated_weights,
            "teacher": saved.cache.get("teacher"),
            "teachers": [t["cache"]["teacher"] for t in saved.teachers],
            "step": saved.step,
        },
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in student.vit.state_dict().items()}
        save_file(tensors, str(out / "model.safetensors"))
        # Teacher i's heads under "i." (the order of proteus.teachers in config.json).
        heads = {
            f"{i}.{k}": v.contiguous()
            for i, h in enumerate(trained.heads)
            for k, v in h.state_dict().items()
        }
        if heads:
            save_file(heads, str(out / "proteus_heads.safetensors"))
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    except OSError as exc:
        raise ProteusError(f"--out {out}: cannot write ({exc.strerror or exc})") from exc
    return out
