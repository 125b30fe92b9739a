"""The Proteus objective: token, feature and patch MSE through three LayerNorm+Linear heads,
plus optional intermediate-layer hints, each through its own head.

L_token = MSE(token_head(cls_clean), t_cls)
L_fea   = MSE([token_head(cls_clean); fea_head(patch_clean)], [t_cls; t_patch])
L_patch = MSE(patch_head(patch_masked)[mask], t_patch[mask])
L_hint  = Σ over hints S:T of MSE(hint_head_ST(block_S(clean)), t_layer_T)
loss    = λ_token·L_token + λ_fea·L_fea + λ_patch·L_patch + λ_hint·L_hint

With several teachers, each has its own heads and λ, and the loss is the sum over teachers.

``--loss cosine-smooth-l1`` (RADIO's choice for agglomerative distillation) replaces each MSE:
1 − cosine on the summary (token loss), 0.9·(1 − cosine) + 0.1·smooth-L1 per token on the
spatial ones (feature, patch, hint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F

from proteus.common.models.heads import ProteusHeads
from proteus.common.models.parts import LOSS_KINDS, LOSS_PARTS, Hint, Lambdas
from proteus.common.runtime.errors import ProteusError


@dataclass(frozen=True)
class Objective:
    """One teacher's share of the loss: its λ and the hints that target its layers."""

    lambdas: Lambdas
    hints: tuple[Hint, ...] = ()
    loss: str = "mse"  # one of LOSS_KINDS
    # Targets given as PCA coefficients (train/target_space.py), each with its teacher
    # width D: their MSE is the coefficients' squared error summed, over tokens × D.
    coefficients: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.loss not in LOSS_KINDS:
            raise ProteusError(f"--loss {self.loss}: one of {', '.join(LOSS_KINDS)}")

    def needed_targets(self) -> tuple[str, ...]:
        """The Proteus losses' arrays, then each hinted layer_<i> once."""
        return self.lambdas.needed_targets() + tuple(dict.fromkeys(h.target for h in self.hints))

    def uses(self, part: str) -> bool:
        """Whether the loss part (token, fea, patch, hint) counts in this objective."""
        if part == "hint":
            return bool(self.hints) and self.lambdas.hint > 0
        return getattr(self.lambdas, part) > 0

    def width(self, name: str) -> int | None:
        """The teacher width of target ``name`` if it is given as coefficients."""
        return dict(self.coefficients).get(name)

    @property
    def needs_clean_pass(self) -> bool:
        return bool(self.lambdas.token or self.lambdas.fea or self.hints)


def resolve_lambdas(
    family: str,
    token: float | None,
    fea: float | None,
    patch: float | None,
    hint: float | None = None,
    hints: bool = False,
) -> Lambdas:
    """Defaults 1/1/1; for CLIP teachers 1/0/0 (Proteus: CLIP patch tokens are not trained).
    ``hints``: this teacher has hints, so it may train through them alone."""
    default = Lambdas(1.0, 0.0, 0.0) if family == "clip" else Lambdas()
    lambdas = Lambdas(
        default.token if token is None else token,
        default.fea if fea is None else fea,
        default.patch if patch is None else patch,
        default.hint if hint is None else hint,
    )
    if min(lambdas.token, lambdas.fea, lambdas.patch, lambdas.hint) < 0:
        raise ProteusError("--lambda-*: loss weights cannot be negative")
    if not (lambdas.token or lambdas.fea or lambdas.patch or (hints and lambdas.hint)):
        raise ProteusError("--lambda-token/--lambda-fea/--lambda-patch: all zero, nothing to train")
    return lambdas


@dataclass
class StudentOutput:
    """The student's two passes over a batch, as the losses read them."""

    clean: dict[str, torch.Tensor] | None  # cls (B, Ds), patch (B, N, Ds), layers {block: …}
    masked_patch: torch.Tensor | None = None  # (n, N, Ds): the masked pass, first n samples
    mask: torch.Tensor | None = None  # (n, N) bool: which of those tokens were masked


def losses(
    heads: ProteusHeads,
    objective: Objective | Lambdas,
    student: StudentOutput,
    targets: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """One teacher's loss parts (``loss_<part>`` for each of LOSS_PARTS) and their weighted
    sum (``loss``). ``targets``: name -> float tensor (cls (B, Dt), patch (B, N, Dt),
    layer_<i> (B, 1 + N, Dt)), token grids already on the student's (train/targets.py)."""
    if isinstance(objective, Lambdas):
        objective = Objective(objective)
    lambdas, mask = objective.lambdas, student.mask
    zero = next(heads.parameters()).new_zeros(())
    parts = {f"loss_{part}": zero for part in LOSS_PARTS}
    if heads.token_head is not None:
        clean = _given(student.clean, "the clean pass")
        t_cls = _given(targets.get("cls"), "the cls target")
        cls_pred = heads.token_head(clean["cls"])
        if lambdas.token:
            parts["loss_token"] = summary_loss(objective.loss, cls_pred, t_cls)
        if lambdas.fea:
            fea_pred = _given(heads.fea_head, "the feature head")(clean["patch"])
            t_patch = _given(targets.get("patch"), "the patch target")
            width = objective.width("patch")
            if width is None:
                pred = torch.cat([cls_pred.unsqueeze(1), fea_pred], 1)
                target = torch.cat([t_cls.unsqueeze(1), t_patch], 1)
                parts["loss_fea"] = token_loss(objective.loss, pred, target)
            else:  # the same mean over [cls; patch] × D, the patch part from coefficients
                squared = _squared(cls_pred, t_cls) + _squared(fea_pred, t_patch)
                parts["loss_fea"] = squared / (t_cls.shape[0] * (1 + t_patch.shape[1]) * width)
    if lambdas.patch and mask is not None and mask.any():
        n = mask.shape[0]
        masked = _given(student.masked_patch, "the masked pass")
        pred = _given(heads.patch_head, "the patch head")(masked)[mask]
        t_patch = _given(targets.get("patch"), "the patch target")
        parts["loss_patch"] = _token_loss(objective, "patch", pred, t_patch[:n][mask])
    for hint in objective.hints:
        layers = _given(student.clean, "the clean pass")["layers"]
        pred = heads.hint_heads[hint.key](layers[hint.block])
        term = _token_loss(objective, hint.target, pred, targets[hint.target])
        parts["loss_hint"] = parts["loss_hint"] + term
    total = lambdas.token * parts["loss_token"]
    for part in LOSS_PARTS[1:]:
        total = total + getattr(lambdas, part) * parts[f"loss_{part}"]
    return parts | {"loss": total}


def _squared(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred.float() - target.float()).pow(2).sum()


def _token_loss(
    objective: Objective, name: str, pred: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """token_loss, or for a target given as coefficients its MSE in teacher units."""
    width = objective.width(name)
    if width is None:
        return token_loss(objective.loss, pred, target)
    return _squared(pred, target) / (target[..., 0].numel() * width)


def summary_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, D) summaries: MSE, or 1 − cosine."""
    if kind == "mse":
        return F.mse_loss(pred, target)
    return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()


def token_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(…, D) tokens: MSE, or 0.9·(1 − cosine) + 0.1·smooth-L1, each averaged over tokens."""
    if kind == "mse":
        return F.mse_loss(pred, target)
    cosine = (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
    return 0.9 * cosine + 0.1 * F.smooth_l1_loss(pred, target)


_T = TypeVar("_T")


def _given(value: _T | None, what: str) -> _T:
    """What the objective needs, which the Distiller always provides (a bug otherwise)."""
    if value is None:
        raise ValueError(f"losses: {what} is missing, though this objective needs it")
    return value
