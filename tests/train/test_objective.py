"""The Proteus losses against the formula computed by hand in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from proteus.common.models.grid import resize_patch_targets
from proteus.common.models.heads import ProteusHeads
from proteus.common.models.parts import LOSS_PARTS, Lambdas
from proteus.common.runtime.errors import ProteusError
from proteus.train.objective import StudentOutput, losses, resolve_lambdas

B, N, DS, DT, NM = 4, 6, 5, 3, 2


def _numpy_head(x, ln_w, ln_b, w, b):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    normed = (x - mean) / np.sqrt(var + 1e-5) * ln_w + ln_b
    return normed @ w.T + b


def _params(head):
    norm, linear = head
    tensors = (norm.weight, norm.bias, linear.weight, linear.bias)
    return [p.detach().numpy().astype(np.float64) for p in tensors]


@pytest.fixture
def case():
    torch.manual_seed(0)
    heads = ProteusHeads(DS, DT, Lambdas())
    for p in heads.parameters():  # non-trivial LayerNorm affine too
        torch.nn.init.normal_(p)
    clean = {"cls": torch.randn(B, DS), "patch": torch.randn(B, N, DS)}
    masked_patch = torch.randn(NM, N, DS)
    mask = torch.zeros(NM, N, dtype=torch.bool)
    mask[0, [1, 4]] = True
    mask[1, [0, 2, 5]] = True
    t_cls, t_patch = torch.randn(B, DT), torch.randn(B, N, DT)
    return heads, clean, masked_patch, mask, t_cls, t_patch


def test_losses_equal_the_formula(case):
    heads, clean, masked_patch, mask, t_cls, t_patch = case
    lambdas = Lambdas(0.7, 1.3, 2.0)
    got = losses(heads, lambdas, StudentOutput(clean, masked_patch, mask), _t(t_cls, t_patch))

    np64 = {k: v.numpy().astype(np.float64) for k, v in clean.items()}
    tc, tp = t_cls.numpy().astype(np.float64), t_patch.numpy().astype(np.float64)
    cls_pred = _numpy_head(np64["cls"], *_params(heads.token_head))
    fea_pred = _numpy_head(np64["patch"], *_params(heads.fea_head))
    patch_pred = _numpy_head(masked_patch.numpy().astype(np.float64), *_params(heads.patch_head))
    m = mask.numpy()

    token = ((cls_pred - tc) ** 2).mean()
    fea_p = np.concatenate([cls_pred[:, None], fea_pred], 1)
    fea_t = np.concatenate([tc[:, None], tp], 1)
    fea = ((fea_p - fea_t) ** 2).mean()
    patch = ((patch_pred[m] - tp[:NM][m]) ** 2).mean()  # only the 5 masked tokens count
    total = 0.7 * token + 1.3 * fea + 2.0 * patch

    for name, want in (
        ("loss_token", token),
        ("loss_fea", fea),
        ("loss_patch", patch),
        ("loss", total),
    ):
        assert got[name].item() == pytest.approx(want, rel=1e-5), name


def test_unmasked_tokens_do_not_affect_the_patch_loss(case):
    heads, clean, masked_patch, mask, t_cls, t_patch = case
    base = losses(heads, Lambdas(), StudentOutput(clean, masked_patch, mask), _t(t_cls, t_patch))
    changed = masked_patch.clone()
    changed[~mask] += 100.0
    other = t_patch.clone()
    other[NM:] += 100.0  # targets of samples without a mask
    again = losses(heads, Lambdas(), StudentOutput(clean, changed, mask), _t(t_cls, t_patch))
    assert again["loss_patch"].item() == pytest.approx(base["loss_patch"].item())
    patch_only = losses(
        heads, Lambdas(0, 0, 1), StudentOutput(clean, masked_patch, mask), _t(t_cls, other)
    )
    assert patch_only["loss"].item() == pytest.approx(base["loss_patch"].item())


def _t(t_cls, t_patch) -> dict[str, torch.Tensor]:
    return {"cls": t_cls, "patch": t_patch}


def test_the_loss_parts_are_one_table():
    """λ names, logged names and Lambdas' fields all come from LOSS_PARTS."""
    from dataclasses import fields

    assert tuple(f.name for f in fields(Lambdas)) == LOSS_PARTS


def test_lambda_defaults_follow_the_teacher():
    assert resolve_lambdas("dinov2", None, None, None) == Lambdas(1, 1, 1)
    assert resolve_lambdas("clip", None, None, None) == Lambdas(1, 0, 0)
    assert resolve_lambdas("clip", None, 0.5, None) == Lambdas(1, 0.5, 0)
    assert Lambdas(1, 0, 0).needed_targets() == ("cls",)
    assert Lambdas(0, 0, 1).needed_targets() == ("patch",)
    with pytest.raises(ProteusError, match="all zero"):
        resolve_lambdas("dinov2", 0, 0, 0)
    with pytest.raises(ProteusError, match="negative"):
        resolve_lambdas("dinov2", -1, None, None)


def test_only_needed_heads_exist():
    heads = ProteusHeads(DS, DT, Lambdas(1, 0, 0))
    assert heads.token_head is not None and heads.fea_head is None and heads.patch_head is None


def test_patch_targets_resize_to_the_student_grid():
    # A linear ramp over a 2×2 grid, bilinearly resampled to 4×4, stays a ramp.
    grid = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    patch = grid.reshape(1, 4, 1).repeat(1, 1, 2)
    out = resize_patch_targets(patch, (2, 2), (4, 4))
    assert out.shape == (1, 16, 2)
    image = out[0, :, 0].reshape(4, 4)
    assert image[0, 0] == 0 and image[-1, -1] == 3
    assert torch.all(image[:, 1:] >= image[:, :-1]) and torch.all(image[1:] >= image[:-1])
    assert resize_patch_targets(patch, (2, 2), (2, 2)) is patch


def test_ema_warms_up_then_holds_its_decay():
    from proteus.train.ema import EMA

    model = torch.nn.Linear(2, 2)
    assert EMA(model, decay=0.999).decay_at(0) == 0.999  # the reference's: no warm-up
    ema = EMA(model, decay=0.999, warmup=True)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(10_000_000) == 0.999
    with torch.no_grad():
        model.weight.fill_(1.0)
    before = ema.model.weight.clone()
    ema.update(model, step=0)  # moves 90% of the way at the first step
    torch.testing.assert_close(ema.model.weight, before + 0.9 * (1.0 - before))
