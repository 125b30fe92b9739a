"""Target codecs: float casts, int8 with per-token scales, PCA; error bounds as documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from proteus.common.cache.codec import TargetCodec, components_for, fit_pca


def _tokens(n=64, tokens=17, d=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Low-rank structure plus noise, and one outlier token per view with a 30x norm
    # (the high-norm tokens of large ViTs that break one-scale-per-tensor int8).
    basis = torch.randn(8, d, generator=g)
    noise = torch.randn(n, tokens, d, generator=g)
    x = torch.randn(n, tokens, 8, generator=g) @ basis + 0.05 * noise
    x[:, 3] *= 30
    return x


def _rel_mse(a, b):
    return float(((a - b) ** 2).mean() / (b**2).mean())


def test_float16_round_trip():
    x = _tokens()
    codec = TargetCodec("patch", (17, 48), "float16")
    stored = codec.encode(x)
    assert stored["patch"].dtype == torch.float16
    assert torch.equal(codec.decode(stored), x.half().float())


def test_int8_per_token_scale_bounds_and_outliers():
    x = _tokens()
    codec = TargetCodec("patch", (17, 48), "int8")
    stored = codec.encode(x)
    assert stored["patch"].dtype == torch.int8 and stored["patch_scale"].shape == (64, 17)
    y = codec.decode(stored)
    # Each value is within half a quantisation step of its token's scale.
    step = stored["patch_scale"].float().unsqueeze(-1)
    assert ((y - x).abs() <= 0.5 * step * 1.01 + 1e-6).all()
    assert _rel_mse(y, x) < 1e-4
    # One scale per tensor would crush the ordinary tokens next to the outliers.
    per_tensor = torch.round(x / (x.abs().max() / 127)) * (x.abs().max() / 127)
    ordinary = [i for i in range(17) if i != 3]
    assert (
        _rel_mse(y[:, ordinary], x[:, ordinary])
        < _rel_mse(per_tensor[:, ordinary], x[:, ordinary]) / 10
    )
    assert codec.bytes_per_view() == 17 * 48 + 17 * 2


def test_int8_cls_has_one_scale_per_view():
    codec = TargetCodec("cls", (48,), "int8")
    stored = codec.encode(torch.randn(5, 48))
    assert stored["cls_scale"].shape == (5,)
    assert codec.arrays() == {"cls": ((48,), "int8"), "cls_scale": ((), "float16")}


@pytest.mark.parametrize("kind", ["float16", "int8"])
def test_pca_keeps_the_variance_it_reports(kind):
    x = _tokens(n=128)
    flat = x.reshape(-1, 48)
    basis, kept = fit_pca(flat, 8)
    assert kept > 0.99 and components_for(flat, 0.99) <= 8
    codec = TargetCodec("patch", (17, 48), kind, pca_k=8)
    codec = codec.fit(basis)
    stored = codec.encode(x)
    assert stored["patch"].shape == (128, 17, 8)
    y = codec.decode(stored)
    centred = x - basis.mean
    # The reconstruction error is the variance PCA left out (plus quantisation).
    assert _rel_mse(y - basis.mean, centred) == pytest.approx(1 - kept, abs=2e-3)
    assert codec.bytes_per_view() < TargetCodec("patch", (17, 48), kind).bytes_per_view()


def test_pca_basis_is_orthonormal():
    basis, _ = fit_pca(_tokens().reshape(-1, 48), 6)
    gram = basis.components @ basis.components.T
    np.testing.assert_allclose(gram.numpy(), np.eye(6), atol=1e-5)


def test_a_pca_codec_owns_its_state_and_refuses_to_work_without_it():
    x = _tokens(n=16)
    codec = TargetCodec("patch", (17, 48), "float16", pca_k=8)
    with pytest.raises(ValueError, match="needs its fitted basis"):
        codec.encode(x)
    fitted = codec.fit(fit_pca(x.reshape(-1, 48), 8)[0])
    assert fitted == codec  # the fitted state is not part of how the target is stored
    assert set(fitted.state_arrays()) == set(codec.state_keys) == {"mean", "basis"}
    # The arrays the cache stores give back the same codec.
    again = codec.with_state_arrays(fitted.state_arrays())
    assert torch.equal(again.decode(fitted.encode(x)), fitted.decode(fitted.encode(x)))
    plain = TargetCodec("cls", (48,), "int8")
    assert plain.state_keys == () and plain.to("cpu") is plain


@pytest.mark.parametrize("k", [16, 12])
def test_rotations_are_fixed_and_orthogonal(k):
    from proteus.common.cache.codec import rotation

    r, kind = rotation(k, seed=7)
    assert kind == ("hadamard" if k == 16 else "orthogonal")
    torch.testing.assert_close(r @ r.T, torch.eye(k), atol=1e-5, rtol=0)
    assert torch.equal(r, rotation(k, seed=7)[0]) and not torch.equal(r, rotation(k, seed=8)[0])


def test_rotated_int8_pca_keeps_outlier_heavy_coefficients():
    # Tokens whose spectrum falls steeply (as real features' does): unrotated, one absmax
    # scale per token rounds the small coefficients away; rotated, it does not.
    from proteus.common.cache.codec import fidelity, fit_pca, rotated

    g = torch.Generator().manual_seed(0)
    spectrum = 1.0 / torch.arange(1, 65).float() ** 1.5
    mix = torch.linalg.qr(torch.randn(64, 64, generator=g))[0]
    tokens = (torch.randn(4000, 64, generator=g) * spectrum) @ mix.T
    basis, _ = fit_pca(tokens[:3000], 32)
    plain = TargetCodec("patch", (4, 64), "int8", 32).fit(basis)
    turned = TargetCodec("patch", (4, 64), "int8", 32).fit(rotated(basis, seed=1)[0])
    exact = TargetCodec("patch", (4, 64), "float32", 32).fit(basis)
    held = tokens[3000:]
    a, b, c = (fidelity(codec, held) for codec in (plain, turned, exact))
    # The rotation changes nothing but the rounding: float32 decodes the same either way.
    exact_turned = exact.fit(turned.fitted)
    torch.testing.assert_close(
        exact.decode(exact.encode(held)),
        exact_turned.decode(exact_turned.encode(held)),
        atol=1e-4,
        rtol=0,
    )
    assert b["variance_kept"] > a["variance_kept"] and b["cosine_p1"] > a["cosine_p1"]
    assert c["variance_kept"] - b["variance_kept"] < 0.5 * (c["variance_kept"] - a["variance_kept"])
