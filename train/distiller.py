"""Student + heads as one module, so DDP sees one forward that returns the loss parts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from proteus.common.models.heads import ProteusHeads, make_heads
from proteus.common.models.parts import LOSS_PARTS
from proteus.common.models.students import Student
from proteus.train.objective import Objective, StudentOutput, losses


class Distiller(nn.Module):
    """One student, one head set per teacher.

    ``teachers``: per teacher, (target width, its objective, hint key -> layer width). With one
    teacher the loss parts are ``loss_token`` …; with several, ``loss_token.t1`` … per teacher
    (1-based, the --cache order) and ``loss`` is the sum over teachers.
    """

    def __init__(
        self,
        student: Student,
        teachers: Sequence[tuple[int, Objective, dict[str, int]]],
        balance: bool = False,
        dense_dims: Sequence[int | None] | None = None,
    ):
        """``balance``: weigh each teacher's loss by (mean of the teachers' losses) / (its
        own), both without gradient, so every teacher pulls with the same loss magnitude
        whatever the scale of its features (its own λ still apply inside its loss).
        ``dense_dims``: per teacher, the width its feature/patch heads predict when it is
        not the teacher's (PCA coefficients; ``hint_dims`` then give the hint heads')."""
        super().__init__()
        self.balance = balance and len(teachers) > 1
        self.student = student
        self.objectives = [objective for _, objective, _ in teachers]
        dense = list(dense_dims) if dense_dims is not None else [None] * len(teachers)
        # Per teacher: name -> PCABasis of targets learnt as coefficients (the trainer sets
        # it), so what is reported in teacher units (the gauge's cosines) can be mapped back.
        self.coefficient_bases: list[dict] = [{} for _ in teachers]
        self.heads = nn.ModuleList(
            make_heads(student, dim, objective.lambdas, objective.hints, hint_dims, d_dense)
            for (dim, objective, hint_dims), d_dense in zip(teachers, dense, strict=True)
        )
        self.hint_blocks = tuple(sorted({h.block for o in self.objectives for h in o.hints}))
        self.clean_pass = any(o.needs_clean_pass for o in self.objectives)
        self.masked_pass = any(o.lambdas.patch for o in self.objectives)
        # Without the patch loss the mask token never gets a gradient; DDP needs every
        # trainable parameter to get one.
        student.mask_token.requires_grad_(self.masked_pass)

    def part_names(self) -> tuple[str, ...]:
        """The loss parts this run computes: a part whose λ is 0 is not logged as a zero."""
        return tuple(
            self._logged_as(part, i)
            for i, objective in enumerate(self.objectives)
            for part in LOSS_PARTS
            if objective.uses(part)
        )

    def _logged_as(self, part: str, teacher: int) -> str:
        """``loss_<part>``; with several teachers ``loss_<part>.t<i>`` (1-based)."""
        name = part if part.startswith("loss_") else f"loss_{part}"
        return name if len(self.objectives) == 1 else f"{name}.t{teacher + 1}"

    def forward(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        targets: Sequence[dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """Two student passes: clean (token, feature, hint losses), masked (patch loss) over
        the first ``len(masks)`` samples only; the others would be masked by nothing.
        ``targets``: per teacher, name -> float tensor with token grids on the student's."""
        return self.losses_of(self.passes(images, masks), targets)

    def losses_of(
        self, out: StudentOutput, targets: Sequence[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """The loss parts of these passes (``loss`` the weighted sum over teachers)."""
        parts: dict[str, torch.Tensor] = {}
        per_teacher: list[torch.Tensor] = []
        head_sets = cast("list[ProteusHeads]", list(self.heads))
        for index, (heads, objective, wanted) in enumerate(
            zip(head_sets, self.objectives, targets, strict=True)
        ):
            own = losses(heads, objective, out, wanted)
            per_teacher.append(own.pop("loss"))
            parts |= {self._logged_as(name, index): value for name, value in own.items()}
        stacked = torch.stack(per_teacher)
        if self.balance:
            scale = stacked.detach()
            stacked = stacked * (scale.mean() / scale.clamp_min(1e-12))
        return {"loss": stacked.sum()} | {name: parts[name] for name in self.part_names()}

    def passes(self, images: torch.Tensor, masks: torch.Tensor) -> StudentOutput:
        """The student's clean pass, and its masked pass over the first ``len(masks)``."""
        out = StudentOutput(None)
        if self.clean_pass:
            out.clean = self.student(images, layers=self.hint_blocks)
        n = masks.shape[0]
        if self.masked_pass and n:
            out.masked_patch = self.student(images[:n], mask=masks)["patch"]
            out.mask = masks
        return out

    def no_weight_decay(self) -> set[str]:
        return {f"student.{name}" for name in self.student.no_weight_decay()}


def param_groups(model: Distiller, weight_decay: float, decay_tokens: bool = True) -> list[dict]:
    """No decay for biases and norms (ndim <= 1). ``decay_tokens``: position embeddings and the
    cls/mask tokens decay too, as in the reference (timm's create_optimizer on a model without
    no_weight_decay()); False exempts them (the timm/DeiT ViT convention)."""
    skip = set() if decay_tokens else model.no_weight_decay()
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in skip else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
