"""The Proteus heads: LayerNorm + Linear from the student's widths to a teacher's, one head per
loss part the run computes, and the records that decide which heads exist.

A head set is built by training (one per teacher) and rebuilt from a checkpoint's teacher
records by evaluation and export, so both live here rather than with the losses.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from proteus.common.models.parts import Hint, Lambdas
from proteus.common.models.students import Student


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
        d_dense: int | None = None,
    ):
        """``d_dense``: what the feature and patch heads predict when not ``d_teacher`` (K
        coefficients of a PCA-coded patch target, train/target_space.py)."""
        super().__init__()
        summary = d_summary or d_student
        inputs = hint_inputs or {}
        dense = d_dense or d_teacher
        self.token_head = _head(summary, d_teacher) if lambdas.token or lambdas.fea else None
        self.fea_head = _head(d_student, dense) if lambdas.fea else None
        self.patch_head = _head(d_student, dense) if lambdas.patch else None
        self.hint_heads = nn.ModuleDict(
            {key: _head(inputs.get(key, d_student), dim) for key, dim in (hint_dims or {}).items()}
        )


def make_heads(
    student: Student,
    d_teacher: int,
    lambdas: Lambdas,
    hints: Sequence[Hint],
    hint_dims: dict[str, int],
    d_dense: int | None = None,
) -> ProteusHeads:
    """One teacher's heads, sized for this student's summary, dense and hinted-block widths."""
    return ProteusHeads(
        student.dense_dim,
        d_teacher,
        lambdas,
        hint_dims,
        d_summary=student.summary_dim,
        hint_inputs={h.key: student.block_dim(h.block) for h in hints},
        d_dense=d_dense,
    )
