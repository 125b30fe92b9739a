"""Where features come from: a trained student, a teacher, or an untrained student.

Every source becomes a :class:`FeatureSource`: a frozen model returning ``cls`` and ``patch``,
with the input size and normalisation it expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from torch import nn

from proteus.common.cache.stats import TargetStats
from proteus.common.models.heads import ProteusHeads, make_heads
from proteus.common.models.students import Student, build_student
from proteus.common.models.teachers import build_teacher, get_teacher_spec
from proteus.common.models.teachers.spec import IMAGENET_MEAN, IMAGENET_STD
from proteus.common.runs.checkpoint import Checkpoint
from proteus.common.runtime.errors import ProteusError


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
            out, summaries = self.model.forward_with_summaries(images, blocks)
        else:  # a teacher's layers already passed its final norm
            out = self.model(images)
            layers = out["layers"]
            summaries = [layers[i][:, 0] for i in sorted(layers)][-blocks:]
        tokens = [t.float() for t in summaries]
        return {"cls": out["cls"].float(), "patch": out["patch"].float(), "blocks": tokens}

    @torch.no_grad()
    def dense(
        self, images: torch.Tensor, blocks: int = 1
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each of the last ``blocks`` blocks (last block last): its patch features as a
        map (B, C, rows, cols) on the model's own grid and its global token (B, C'). A
        convnet student gives its last map(s); a teacher must have been built with the
        layers (``load_source(blocks=n)``) when n > 1."""
        model = self.model
        if isinstance(model, Student):
            if blocks > model.depth:
                raise ProteusError(f"--blocks {blocks}: {self.name} has {model.depth} blocks")
            if blocks == 1:
                out = model(images)
                tokens, grid = model.native_dense(out)
                return [(_as_map(tokens, grid), out["cls"].float())]
            return [
                (_as_map(t, model.grid), c.float()) for t, c in model.dense_blocks(images, blocks)
            ]
        out = model(images)
        if blocks == 1:
            return [(_as_map(out["patch"]), out["cls"].float())]
        layers = out["layers"]
        chosen = sorted(layers)[-blocks:]
        if len(chosen) < blocks:
            raise ProteusError(
                f"--blocks {blocks}: {self.name} returns {len(chosen)} blocks (it has fewer, or "
                f"was built without its last {blocks} layers)"
            )
        return [(_as_map(layers[i][:, 1:]), layers[i][:, 0].float()) for i in chosen]


def _as_map(tokens: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, rows·cols, C) row-major tokens → (B, C, rows, cols); a square grid unless given."""
    b, n, c = tokens.shape
    if grid is None:
        side = round(n**0.5)
        if side * side != n:
            raise ProteusError(f"{n} patch tokens do not make a square grid; pass the grid")
        grid = (side, side)
    return tokens.float().transpose(1, 2).reshape(b, c, *grid)


@dataclass
class TrainedStudent:
    """A checkpoint's student (the weights evaluated), its head set per teacher and the
    checkpoint itself (what it was trained on, how to feed it)."""

    student: Student
    heads: list[ProteusHeads]  # in the order of checkpoint.teachers
    checkpoint: Checkpoint
    evaluated_weights: str  # "raw" or "ema": which of the checkpoint's students this is

    def teacher_index(self, weights_sha256: str) -> int | None:
        """Which of the checkpoint's teachers has these weights, if any."""
        return self.checkpoint.teacher_index(weights_sha256)

    def stats(self, teacher: int) -> TargetStats | None:
        """The statistics teacher ``teacher``'s targets were standardised with (None: raw);
        ``restore`` maps that teacher's head outputs back to its units."""
        saved = self.checkpoint.target_stats
        state = saved[teacher] if saved else None
        return TargetStats.from_state(state) if state else None

    @property
    def name(self) -> str:
        return self.checkpoint.student_name

    @property
    def mean(self) -> tuple[float, float, float]:
        r, g, b = self.checkpoint.mean
        return r, g, b

    @property
    def std(self) -> tuple[float, float, float]:
        r, g, b = self.checkpoint.std
        return r, g, b


def load_trained_student(checkpoint: Path, ema: bool | None = None) -> TrainedStudent:
    """The student of a run folder or checkpoint file; ``ema`` picks the EMA weights, None
    the weights its recipe evaluates (the reference recipe: raw; checkpoints before recipes
    existed: EMA)."""
    saved = Checkpoint.load(checkpoint)
    student = build_student(
        saved.student_name, saved.image_size, style=saved.student_style, grid=saved.grid
    )
    if ema is None:
        ema = saved.eval_weights == "ema"
    weights = saved.ema if ema and saved.ema is not None else saved.student
    evaluated = "ema" if weights is saved.ema else "raw"
    try:
        student.load_state_dict(weights)
    except RuntimeError as exc:
        raise ProteusError(
            f"--checkpoint {checkpoint}: its weights do not fit {saved.student_name} "
            f"({str(exc).splitlines()[0]})"
        ) from exc
    heads = nn.ModuleList(
        make_heads(student, t.dim, t.lambdas, t.hints, t.hint_dims) for t in saved.teachers
    )
    heads.load_state_dict(saved.heads)
    head_sets = [cast(ProteusHeads, h) for h in heads.eval()]
    return TrainedStudent(student.eval(), head_sets, saved, evaluated)


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
        kind = trained.evaluated_weights
        return FeatureSource(
            f"student {trained.name} ({kind})",
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
    if student is None:
        raise ProteusError("--random-init needs --student NAME (the architecture to initialise)")
    random = build_student(student, image_size).eval()
    return FeatureSource(f"random {student}", random, image_size, IMAGENET_MEAN, IMAGENET_STD)
