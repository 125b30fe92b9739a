"""Training on PCA coefficients: which targets a student learns in the cache's coefficient
space instead of teacher units, and how its heads map back to teacher units.

A PCA-coded target is stored as K coefficients c on orthonormal basis rows B (K × D) plus a
mean μ; the decoded target is x̂ = c·B + μ. For a head that predicts K values p, the decoded
prediction p·B + μ differs from x̂ by (p − c)·B, whose squared norm is ‖p − c‖² (orthonormal
rows). So the mean-squared error in teacher units,

    MSE(p·B + μ, x̂) = Σ‖p − c‖² / (tokens × D),

is computed exactly from the K coefficients (train/objective.py: the sum over K divided by
the teacher width D, so λ and lr keep their meaning: the scale to the decoded loss is 1).
Against the teacher's own features x it adds the codec's residual ‖x − x̂‖² / D, a constant
the student cannot change. Only MSE has this property (a cosine is not preserved by dropping
μ and the residual), and only raw targets (--standardize rescales channels of x̂). Bilinear
resampling to the student's grid is affine with weights summing to 1, so it commutes with the
decode.

The heads of such a student predict K values; a checkpoint keeps them (to resume) and their
fold into teacher units (``fold_heads``: W_D = Bᵀ·W_K, b_D = b_K·B + μ), which is what eval,
export and viz read, so they work on such runs unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from proteus.common.cache.codec import PCABasis
from proteus.common.models.parts import Hint
from proteus.common.runtime.errors import ProteusError

SPACES = ("auto", "teacher", "coefficients")


@dataclass(frozen=True)
class Coefficients:
    """One target learnt as coefficients: its name, K, teacher width D and basis."""

    name: str  # patch or layer_<i>
    k: int
    dim: int
    basis: PCABasis

    def record(self) -> dict[str, Any]:
        return {"k": self.k, "dim": self.dim, "loss_scale_to_decoded": 1.0}


def choose(
    asked: str, source, names: tuple[str, ...], loss: str, standardize: bool
) -> tuple[dict[str, Coefficients], str | None]:
    """The targets of ``source`` this student learns as coefficients (``--target-space``),
    and, for ``auto``, a line saying why none could be (None when there is nothing to say)."""
    if asked == "teacher":
        return {}, None
    codecs: dict = source.pca_codecs(names)
    why = None
    if not codecs:
        why = f"{source.option} stores no PCA-coded target this run reads"
    elif loss != "mse":
        why = f"--loss {loss} is not preserved in coefficient space (only mse is)"
    elif standardize:
        why = "--standardize rescales the decoded channels"
    if why is not None:
        if asked == "coefficients":
            raise ProteusError(f"--target-space coefficients: {why}; use --target-space teacher")
        return {}, None if not codecs else f"targets learnt in teacher units: {why}"
    return {
        name: Coefficients(name, int(codec.pca_k), int(codec.shape[-1]), codec.fitted)
        for name, codec in codecs.items()
    }, None


def head_widths(
    space: dict[str, Coefficients], dim: int, hints: tuple[Hint, ...], hint_dims: dict[str, int]
) -> tuple[int, dict[str, int]]:
    """The width the feature/patch heads predict (K for coefficient patches, else D) and
    each hint head's."""
    dense = space["patch"].k if "patch" in space else dim
    hinted = {h.key: space[h.target].k if h.target in space else hint_dims[h.key] for h in hints}
    return dense, hinted


def fold_heads(
    state: dict[str, torch.Tensor], spaces: list[dict[str, Coefficients]], hints
) -> dict[str, torch.Tensor]:
    """The head state dict in teacher units: every coefficient head's last Linear composed
    with its basis (``hints``: per teacher, its hints, to find the layer each head reads)."""
    folded = dict(state)
    for index, space in enumerate(spaces):
        heads: dict[str, Coefficients] = {}
        if "patch" in space:
            heads |= {
                f"{index}.fea_head.1": space["patch"],
                f"{index}.patch_head.1": space["patch"],
            }
        for hint in hints[index]:
            if hint.target in space:
                heads[f"{index}.hint_heads.{hint.key}.1"] = space[hint.target]
        for prefix, target in heads.items():
            if f"{prefix}.weight" not in state:
                continue
            basis = target.basis.to(state[f"{prefix}.weight"].device)
            weight, bias = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
            folded[f"{prefix}.weight"] = basis.components.T @ weight.float()
            folded[f"{prefix}.bias"] = bias.float() @ basis.components + basis.mean
    return folded
