"""The Proteus objective: token, feature and patch MSE through three LayerNorm+Linear heads,
plus optional intermediate-layer hints, each through its own head.

L_token = MSE(token_head(cls_clean), t_cls)
L_fea   = MSE([token_head(cls_clean); fea_head(patch_clean)], [t_cls; t_patch])
L_patch = MSE(patch_head(patch_masked)[mask], t_patch[mask])
L_hint  = Σ over hints S:T of MSE(hint_head_ST(block_S(clean)), t_layer_T)
loss    = λ_token·L_token + λ_fea·L_fea + λ_patch·L_patch + λ_hint·L_hint

With several teachers, each has its own heads and λ, and the loss is the sum over teachers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from proteus.common.errors import ProteusError


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


def parse_hint(text: str) -> Hint:
    """``S:T`` (first cache) or ``S:T@C`` (the C-th --cache, from 1)."""
    pair, _, cache = text.partition("@")
    block, sep, layer = pair.partition(":")
    try:
        if not sep:
            raise ValueError
        teacher = int(cache) - 1 if cache else 0
        if teacher < 0:
            raise ValueError
        return Hint(int(block), int(layer), teacher)
    except ValueError:
        raise ProteusError(
            f"--hint {text}: write STUDENT_BLOCK:TEACHER_LAYER, e.g. 5:19, or 5:19@2 for the "
            "second --cache"
        ) from None


def resolve_hints(hints: tuple[Hint, ...], depth: int, caches: list) -> tuple[Hint, ...]:
    """Check each hint against the student's depth and the :class:`Cache` it targets; a
    negative block counts from the end. Returns the hints with block indices resolved."""
    out = []
    for hint in hints:
        if not -depth <= hint.block < depth:
            raise ProteusError(
                f"--hint {hint}: the student has {depth} blocks, so a block is 0..{depth - 1} "
                "(or negative, from the end)"
            )
        if hint.teacher >= len(caches):
            raise ProteusError(f"--hint {hint}: there are only {len(caches)} --cache")
        cache = caches[hint.teacher]
        stored = sorted(n for n in cache.manifest.targets if n.startswith("layer_"))
        if hint.target not in stored:
            raise ProteusError(
                f"--hint {hint}: --cache {cache.path} stores no {hint.target} (it has "
                f"{', '.join(stored) or 'no intermediate layers'}); extract with "
                f"--layers {hint.layer}"
            )
        resolved = Hint(hint.block % depth, hint.layer, hint.teacher)
        if resolved in out:
            raise ProteusError(f"--hint {hint}: given twice")
        out.append(resolved)
    return tuple(out)


@dataclass(frozen=True)
class Objective:
    """One teacher's share of the loss: its λ and the hints that target its layers."""

    lambdas: Lambdas
    hints: tuple[Hint, ...] = ()

    def needed_targets(self) -> tuple[str, ...]:
        """The Proteus losses' arrays, then each hinted layer_<i> once."""
        return self.lambdas.needed_targets() + tuple(dict.fromkeys(h.target for h in self.hints))

    def uses(self, part: str) -> bool:
        """Whether the loss part (token, fea, patch, hint) counts in this objective."""
        if part == "hint":
            return bool(self.hints) and self.lambdas.hint > 0
        return getattr(self.lambdas, part) > 0

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


def _head(d_student: int, d_teacher: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(d_student), nn.Linear(d_student, d_teacher))


class ProteusHeads(nn.Module):
    """The heads a run needs (an unused head would stall DDP's gradient reduction).

    ``hint_dims``: hint key -> width of its teacher layer. Hint heads are made after the
    Proteus heads, so adding a hint leaves the other heads' initialisation unchanged.
    """

    def __init__(
        self,
        d_student: int,
        d_teacher: int,
        lambdas: Lambdas,
        hint_dims: dict[str, int] | None = None,
    ):
        super().__init__()
        self.token_head = _head(d_student, d_teacher) if lambdas.token or lambdas.fea else None
        self.fea_head = _head(d_student, d_teacher) if lambdas.fea else None
        self.patch_head = _head(d_student, d_teacher) if lambdas.patch else None
        self.hint_heads = nn.ModuleDict(
            {key: _head(d_student, dim) for key, dim in (hint_dims or {}).items()}
        )


def resize_patch_targets(patch: torch.Tensor, grid: tuple[int, int], to: tuple[int, int]):
    """Teacher patch tokens (B, Ht·Wt, D) bilinearly resampled to the student grid."""
    if tuple(grid) == tuple(to):
        return patch
    b, _, d = patch.shape
    image = patch.transpose(1, 2).reshape(b, d, *grid)
    image = F.interpolate(image.float(), size=to, mode="bilinear", align_corners=False)
    return image.flatten(2).transpose(1, 2).to(patch.dtype)


def resize_layer_targets(tokens: torch.Tensor, to: tuple[int, int]) -> torch.Tensor:
    """A layer target (B, 1 + n·n, D) on its square grid: the global token kept, the patch
    tokens resampled to the student grid (a CNN stage has its own grid, not the teacher's)."""
    side = math.isqrt(tokens.shape[1] - 1)
    return torch.cat([tokens[:, :1], resize_patch_targets(tokens[:, 1:], (side, side), to)], 1)


def proteus_losses(
    heads: ProteusHeads,
    objective: Objective | Lambdas,
    clean: dict[str, torch.Tensor] | None,
    masked_patch: torch.Tensor | None,
    mask: torch.Tensor | None,
    t_cls: torch.Tensor | None,
    t_patch: torch.Tensor | None,
    t_layers: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Loss parts and their weighted sum.

    ``clean``: the student's cls (B, Ds), patch (B, N, Ds) and, for hints, ``layers``
    {block: (B, 1 + N, Ds)} on unmasked input.
    ``masked_patch``: (n, N, Ds) patch tokens of the masked pass over the first n samples,
    ``mask``: (n, N) bool. Targets are float, token targets already on the student grid;
    ``t_layers``: layer_<i> name -> (B, 1 + N, Dt).
    """
    if isinstance(objective, Lambdas):
        objective = Objective(objective)
    lambdas = objective.lambdas
    zero = next(heads.parameters()).new_zeros(())
    parts = {"loss_token": zero, "loss_fea": zero, "loss_patch": zero, "loss_hint": zero}
    if heads.token_head is not None:
        cls_pred = heads.token_head(clean["cls"])
        if lambdas.token:
            parts["loss_token"] = F.mse_loss(cls_pred, t_cls)
        if lambdas.fea:
            pred = torch.cat([cls_pred.unsqueeze(1), heads.fea_head(clean["patch"])], 1)
            target = torch.cat([t_cls.unsqueeze(1), t_patch], 1)
            parts["loss_fea"] = F.mse_loss(pred, target)
    if lambdas.patch and mask is not None and mask.any():
        n = mask.shape[0]
        pred = heads.patch_head(masked_patch)[mask]
        parts["loss_patch"] = F.mse_loss(pred, t_patch[:n][mask])
    for hint in objective.hints:
        pred = heads.hint_heads[hint.key](clean["layers"][hint.block])
        parts["loss_hint"] = parts["loss_hint"] + F.mse_loss(pred, t_layers[hint.target])
    parts["loss"] = (
        lambdas.token * parts["loss_token"]
        + lambdas.fea * parts["loss_fea"]
        + lambdas.patch * parts["loss_patch"]
        + lambdas.hint * parts["loss_hint"]
    )
    return parts
