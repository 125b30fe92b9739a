"""The Proteus heads: LayerNorm + Linear from the student's widths to a teacher's, one head per
loss part the run computes, and the records that decide which heads exist.

A head set is built by training (one per teacher) and rebuilt from a checkpoint's teacher
records by evaluation and export, so both live here rather than with the losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from proteus.common.models.students import Student
from proteus.common.runtime.errors import ProteusError


@dataclass(frozen=True)
class Lambdas:
    token: float = 1.0
    fea: float = 1.0
    patch: float = 1.0
    hint: float = 1.0  # weight of each hint's MSE; unused without hints

    def needed_targets(self) -> tuple[str, ...]:
        """Only these arrays are read from the cache: a token-only run never touches patch."""
        names = ["cls"] if self.token or self.fea else []
        if self.fea or self.patch:
            names.append("patch")
        return tuple(names)


@dataclass(frozen=True)
class Hint:
    """Student block ``block`` (0-based output of that block) learns the teacher's stored
    ``layer_<layer>`` target of the ``teacher``-th cache (0-based) through its own head."""

    block: int
    layer: int
    teacher: int = 0

    @property
    def target(self) -> str:
        return f"layer_{self.layer}"

    @property
    def key(self) -> str:  # a ModuleDict key: no dots
        return f"block{self.block}_layer{self.layer}"

    def __str__(self) -> str:
        return f"{self.block}:{self.layer}" + (f"@{self.teacher + 1}" if self.teacher else "")

    @classmethod
    def parse(cls, text: str) -> Hint:
        """``S:T`` (first cache) or ``S:T@C`` (the C-th --cache, from 1): the --hint form."""
        pair, _, cache = text.partition("@")
        block, sep, layer = pair.partition(":")
        try:
            if not sep:
                raise ValueError
            teacher = int(cache) - 1 if cache else 0
            if teacher < 0:
                raise ValueError
            return cls(int(block), int(layer), teacher)
        except ValueError:
            raise ProteusError(
                f"--hint {text}: write STUDENT_BLOCK:TEACHER_LAYER, e.g. 5:19, or 5:19@2 for the "
                "second --cache"
            ) from None


def _head(d_student: int, d_teacher: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(d_student), nn.Linear(d_student, d_teacher))


class ProteusHeads(nn.Module):
    """The heads a run needs (an unused head would stall DDP's gradient reduction).

    ``d_student``: the width of the student's dense tokens; ``d_summary`` that of its summary
    (``cls``) when it differs (a convnet's pooled features). ``hint_dims``: hint key -> width
    of its teacher layer; ``hint_inputs``: hint key -> width of the student block it reads
    (default ``d_student``). Hint heads are made after the Proteus heads, so adding a hint
    leaves the other heads' initialisation unchanged.
    """

    def __init__(
        self,
        d_student: int,
        d_teacher: int,
        lambdas: Lambdas,
        hint_dims: dict[str, int] | None = None,
        *,
        d_summary: int | None = None,
        hint_inputs: dict[str, int] | None = None,
    ):
        super().__init__()
        summary = d_summary or d_student
        inputs = hint_inputs or {}
        self.token_head = _head(summary, d_teacher) if lambdas.token or lambdas.fea else None
        self.fea_head = _head(d_student, d_teacher) if lambdas.fea else None
        self.patch_head = _head(d_student, d_teacher) if lambdas.patch else None
        self.hint_heads = nn.ModuleDict(
            {key: _head(inputs.get(key, d_student), dim) for key, dim in (hint_dims or {}).items()}
        )


def make_heads(
    student: Student,
    d_teacher: int,
    lambdas: Lambdas,
    hints: Sequence[Hint],
    hint_dims: dict[str, int],
) -> ProteusHeads:
    """One teacher's heads, sized for this student's summary, dense and hinted-block widths."""
    return ProteusHeads(
        student.dense_dim,
        d_teacher,
        lambdas,
        hint_dims,
        d_summary=student.summary_dim,
        hint_inputs={h.key: student.block_dim(h.block) for h in hints},
    )
