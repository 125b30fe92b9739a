"""Where features come from: a trained student, a teacher, or an untrained student.

Every source becomes a :class:`FeatureSource`: a frozen model returning ``cls`` and ``patch``,
with the input size and normalisation it expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from proteus.common.errors import ProteusError
from proteus.common.students import Student, build_student
from proteus.common.teachers import build_teacher, get_teacher_spec
from proteus.common.teachers.spec import IMAGENET_MEAN, IMAGENET_STD
from proteus.train.checkpoint import load_checkpoint
from proteus.train.objective import Lambdas, ProteusHeads


@dataclass
class FeatureSource:
    name: str  # for tables: "student (ema)", "teacher dinov2_g", "random vit_s14"
    model: nn.Module  # forward(x) -> {"cls": (B, D), "patch": (B, N, D), …}
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @torch.no_grad()
    def features(self, images: torch.Tensor, blocks: int = 0) -> dict:
        """cls and patch tokens; with ``blocks`` n also "blocks", the class tokens of the
        last n blocks after the final norm (last block last), as DINOv2's linear protocol
        reads them. A teacher source must have been built with those layers."""
        if not blocks:
            out = self.model(images)
            return {"cls": out["cls"].float(), "patch": out["patch"].float()}
        if isinstance(self.model, Student):
            depth = self.model.depth
            out = self.model(images, layers=tuple(range(depth - blocks, depth)))
            layers = {i: self.model.vit.norm(h) for i, h in out["layers"].items()}
        else:  # a teacher's layers already passed its final norm
            out = self.model(images)
            layers = out["layers"]
        tokens = [layers[i][:, 0].float() for i in sorted(layers)][-blocks:]
        return {"cls": out["cls"].float(), "patch": out["patch"].float(), "blocks": tokens}


@dataclass
class TrainedStudent:
    """A checkpoint's student, its head set per teacher and the facts needed to feed it."""

    student: Student
    heads: list[ProteusHeads]  # in the order of state["teachers"]
    state: dict[str, Any]

    def heads_for(self, weights_sha256: str) -> ProteusHeads | None:
        """The heads trained on targets of the teacher with these weights, if any."""
        for heads, teacher in zip(self.heads, self.state["teachers"], strict=True):
            if teacher["cache"]["weights_sha256"] == weights_sha256:
                return heads
        return None

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(self.state["mean"])

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(self.state["std"])


def load_trained_student(checkpoint: Path, ema: bool | None = None) -> TrainedStudent:
    """The student of a run folder or checkpoint file; ``ema`` picks the EMA weights, None
    the weights its recipe evaluates (the reference recipe: raw; checkpoints before recipes
    existed: EMA)."""
    state = load_checkpoint(checkpoint)
    for key in ("student_name", "image_size", "student", "heads", "mean", "std"):
        if key not in state:
            raise ProteusError(f"--checkpoint {checkpoint}: not a proteus checkpoint (no {key})")
    student = build_student(
        state["student_name"], state["image_size"], style=state.get("student_style", "arch")
    )
    if ema is None:
        ema = state.get("eval_weights", "ema") == "ema"
    state = state | {"evaluated_weights": "ema" if ema and state.get("ema") is not None else "raw"}
    weights = state["ema"] if state["evaluated_weights"] == "ema" else state["student"]
    try:
        student.load_state_dict(weights)
    except RuntimeError as exc:
        raise ProteusError(
            f"--checkpoint {checkpoint}: its weights do not fit {state['student_name']} "
            f"({str(exc).splitlines()[0]})"
        ) from exc
    if "teachers" not in state:  # format 1: one teacher, its heads at the top level
        state = state | {
            "teachers": [
                {
                    "dim": state["teacher_dim"],
                    "lambdas": state["lambdas"],
                    "hint_dims": {},
                    "cache": state["cache"],
                }
            ]
        }
        state["heads"] = {f"0.{k}": v for k, v in state["heads"].items()}
    heads = nn.ModuleList(
        ProteusHeads(student.embed_dim, t["dim"], Lambdas(**t["lambdas"]), t["hint_dims"])
        for t in state["teachers"]
    )
    heads.load_state_dict(state["heads"])
    return TrainedStudent(student.eval(), list(heads.eval()), state)


def load_source(
    *,
    checkpoint: Path | None = None,
    ema: bool | None = None,
    teacher: str | None = None,
    weights: Path | None = None,
    student: str | None = None,
    random_init: bool = False,
    image_size: int = 224,
    blocks: int = 0,
) -> FeatureSource:
    """``blocks``: a teacher also returns its last this many blocks (DINOv2 protocol)."""
    """Exactly one of --checkpoint, --teacher, or --student with --random-init."""
    chosen = [checkpoint is not None, teacher is not None, student is not None]
    if sum(chosen) != 1:
        raise ProteusError(
            "choose one feature source: --checkpoint RUN, --teacher NAME, or "
            "--student NAME --random-init"
        )
    if checkpoint is not None:
        trained = load_trained_student(checkpoint, ema)
        kind = trained.state["evaluated_weights"]
        return FeatureSource(
            f"student {trained.state['student_name']} ({kind})",
            trained.student,
            trained.student.image_size,
            trained.mean,
            trained.std,
        )
    if teacher is not None:
        depth = get_teacher_spec(teacher).depth
        layers = tuple(range(-min(blocks, depth), 0))
        model = build_teacher(teacher, image_size=image_size, weights=weights, layers=layers)
        return FeatureSource(
            f"teacher {teacher}", model, model.image_size, model.spec.mean, model.spec.std
        )
    if not random_init:
        raise ProteusError("--student NAME needs --random-init (a trained one is --checkpoint)")
    torch.manual_seed(0)
    model = build_student(student, image_size).eval()
    return FeatureSource(f"random {student}", model, image_size, IMAGENET_MEAN, IMAGENET_STD)
