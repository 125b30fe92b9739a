"""Training on PCA coefficients: the loss equals the decoded loss (and the loss against the
teacher's own features minus the codec's residual), heads fold back into teacher units,
a coefficient student trains, resumes and shares a stream with a teacher-units one."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from extract_helpers import extract, tiny_cache
from train_helpers import preempted_after, train, train_config

from proteus.common.cache.reader import Cache
from proteus.common.models.heads import ProteusHeads
from proteus.common.models.parts import Lambdas
from proteus.common.models.teachers import build_teacher
from proteus.common.runs.checkpoint import load_checkpoint
from proteus.common.runs.logs import read_log
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.renderer import RenderConfig, Renderer
from proteus.train.loader import Batches
from proteus.train.objective import Objective, StudentOutput, losses
from proteus.train.runner import run_together
from proteus.train.sampler import ViewSampler
from proteus.train.sources import CacheSource
from proteus.train.target_space import Coefficients, fold_heads

K = 8


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tiny_cache(tmp_path_factory.mktemp("space"), classes=3)
    weights = root / "w.safetensors"
    extract(root / "data", root / "pca32", weights, views=2, dtype="float32", pca=K)
    extract(root / "data", root / "pca8", weights, views=2, dtype="int8", pca=K)
    return root


def _batch(cache_path):
    cache = Cache(cache_path)
    m = cache.manifest
    sampler = ViewSampler(cache.usable_views().reshape(-1, 2), 0, 4, 1, 0.5, 0.5, 4)
    renderer = Renderer(RenderConfig.for_policy(m.policy, m.image_size, m.mean, m.std, max_batch=4))
    source = CacheSource(cache)
    loader = Batches([source], source.rows(None), sampler, renderer, [("cls", "patch")], rank=0)
    return cache, source, loader, loader.batch(3)


def test_the_coefficient_loss_is_the_decoded_loss_and_the_teacher_loss_less_the_residual(world):
    cache, source, loader, batch = _batch(world / "pca32")
    cpu = torch.device("cpu")
    (decoded,) = loader.targets(batch, cpu)
    source.coefficients = frozenset({"patch"})
    (coefficients,) = loader.targets(batch, cpu)
    assert coefficients["patch"].shape[-1] == K and decoded["patch"].shape[-1] == 32
    codec = cache.codec("patch")
    space = [{"patch": Coefficients("patch", K, 32, codec.fitted)}]
    torch.manual_seed(0)
    lambdas = Lambdas(1.0, 1.0, 1.0)
    heads = ProteusHeads(24, 32, lambdas, d_dense=K)
    folded = ProteusHeads(24, 32, lambdas)
    state = fold_heads({f"0.{k}": v for k, v in heads.state_dict().items()}, space, [()])
    folded.load_state_dict({k.removeprefix("0."): v for k, v in state.items()})
    masks = torch.from_numpy(batch.masks_for(4))
    out = StudentOutput(
        {"cls": torch.randn(4, 24), "patch": torch.randn(4, 4, 24)},
        masked_patch=torch.randn(2, 4, 24),
        mask=masks,
    )
    in_coefficients = losses(
        heads, Objective(lambdas, coefficients=(("patch", 32),)), out, coefficients
    )
    decoded_loss = losses(folded, Objective(lambdas), out, decoded)
    for part in ("loss_fea", "loss_patch", "loss"):
        torch.testing.assert_close(in_coefficients[part], decoded_loss[part], rtol=1e-5, atol=1e-6)
    # Against the teacher's own features: the same plus the codec's residual (a constant).
    teacher = build_teacher(cache.manifest.teacher, weights=world / "w.safetensors")
    with torch.no_grad():
        raw = teacher(batch.images)
    truth = {"cls": raw["cls"], "patch": raw["patch"]}
    against_truth = losses(folded, Objective(lambdas), out, truth)
    residual = torch.nn.functional.mse_loss(decoded["patch"], raw["patch"])
    n = masks.shape[0]
    patch_residual = torch.nn.functional.mse_loss(
        decoded["patch"][:n][masks], raw["patch"][:n][masks]
    )
    torch.testing.assert_close(
        against_truth["loss_patch"],
        in_coefficients["loss_patch"] + patch_residual,
        rtol=1e-4,
        atol=1e-5,
    )
    fea_residual = residual * 4 / 5  # the cls row of [cls; patch] is stored whole
    torch.testing.assert_close(
        against_truth["loss_fea"], in_coefficients["loss_fea"] + fea_residual, rtol=1e-4, atol=1e-5
    )
    assert residual > 1e-4  # K < D: the residual is there, and constant in the student


def test_a_coefficient_student_records_its_space_and_folds_its_heads(world, tmp_path):
    run = tmp_path / "coef"
    train(world / "pca8", run, max_steps=6, target_space="coefficients")
    config = json.loads((run / "config.json").read_text())
    assert config["target_space"] == [{"patch": {"k": K, "dim": 32, "loss_scale_to_decoded": 1.0}}]
    state = load_checkpoint(run)
    assert state["coefficient_heads"]["0.fea_head.1.weight"].shape[0] == K
    assert state["heads"]["0.fea_head.1.weight"].shape[0] == 32  # teacher units
    basis = Cache(world / "pca8").codec("patch").fitted
    x = torch.randn(5, state["heads"]["0.fea_head.1.weight"].shape[1])
    k_w, k_b = (state["coefficient_heads"][f"0.patch_head.1.{p}"] for p in ("weight", "bias"))
    d_w, d_b = (state["heads"][f"0.patch_head.1.{p}"] for p in ("weight", "bias"))
    torch.testing.assert_close(
        x @ d_w.T + d_b, (x @ k_w.T + k_b) @ basis.components + basis.mean, rtol=1e-5, atol=1e-5
    )
    # Agreement reads the folded heads against the cache's decoded targets, in teacher units.
    from proteus.evaluate.agreement import run_agreement

    agreement = run_agreement(run, world / "pca8", device="cpu", progress=False)
    assert all(-1 <= agreement[f"{k}_cosine"] <= 1 for k in ("token", "fea", "patch"))
    # auto picks coefficients for a PCA cache, and teacher units where the loss forbids it.
    train(world / "pca8", tmp_path / "auto", max_steps=2)
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["target_space"][0]
    train(world / "pca8", tmp_path / "cos", max_steps=2, loss="cosine-smooth-l1")
    cos = json.loads((tmp_path / "cos" / "config.json").read_text())
    assert cos["target_space"] == [{}] and any("not preserved" in a for a in cos["adjustments"])


def test_a_coefficient_student_resumes_exactly(world, tmp_path):
    train(world / "pca8", tmp_path / "full", max_steps=8, target_space="coefficients")
    cut = tmp_path / "cut"
    with pytest.raises(ProteusError, match="stopped by signal"), preempted_after(5):
        train(world / "pca8", cut, max_steps=8, target_space="coefficients")
    train(world / "pca8", cut, max_steps=8, target_space="coefficients", resume=True)
    assert [r["loss"] for r in read_log(cut)] == [r["loss"] for r in read_log(tmp_path / "full")]


def test_teacher_units_and_coefficients_share_a_stream(world, tmp_path):
    # The stream reads coefficients once; the teacher-units student decodes them itself.
    a = train_config(world / "pca8", tmp_path / "t" / "a", max_steps=5, target_space="teacher")
    b = replace(a, out=tmp_path / "t" / "b", target_space="coefficients")
    run_together([a, b])
    alone = replace(a, out=tmp_path / "alone")
    run_together([alone])
    assert [r["loss"] for r in read_log(a.out)] == [r["loss"] for r in read_log(alone.out)]


def test_coefficients_where_they_do_not_apply_are_refused(world, tmp_path):
    with pytest.raises(
        ProteusError, match=r"--target-space coefficients: --cache .* stores no PCA"
    ):
        train(world / "cache", tmp_path / "a", target_space="coefficients")
    with pytest.raises(ProteusError, match="--loss cosine-smooth-l1 is not preserved"):
        train(world / "pca8", tmp_path / "b", target_space="coefficients", loss="cosine-smooth-l1")
    with pytest.raises(ProteusError, match="--standardize rescales"):
        train(world / "pca8", tmp_path / "c", target_space="coefficients", standardize=True)
