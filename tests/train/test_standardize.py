"""Target statistics, --standardize, --loss cosine-smooth-l1 and --balance-teachers."""

from __future__ import annotations

import hashlib
import json

import imagegen
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from extract_helpers import extract
from train_helpers import train

from proteus.app import main
from proteus.common.cache.layout import seal_path
from proteus.common.cache.manifest import Manifest
from proteus.common.cache.reader import Cache
from proteus.common.cache.stats import TargetStats
from proteus.common.models.parts import Lambdas
from proteus.common.models.students import build_student
from proteus.common.runs.checkpoint import Checkpoint
from proteus.common.runtime.errors import ProteusError
from proteus.evaluate.agreement import run_agreement
from proteus.evaluate.models import load_trained_student
from proteus.train.distiller import Distiller
from proteus.train.objective import Objective, StudentOutput, losses, token_loss
from proteus.train.targets import StudentTargets


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("standardize")
    data = imagegen.image_folder(root / "data", classes=2, per_class=3)
    dino = imagegen.save_teacher_weights("tiny_dinov2", root / "dino.safetensors")
    clip = imagegen.save_teacher_weights("tiny_clip", root / "clip.safetensors")
    extract(data, root / "a", dino, views=2, seed=5, dtype="float32", shard_views=4)
    extract(data, root / "b", clip, teacher="tiny_clip", views_from=root / "a", layers=())
    return root


def test_manifest_statistics_are_those_of_the_stored_targets(world):
    cache = Cache(world / "a")
    ids = cache.usable_views()
    assert cache.manifest.num_shards > 1  # merged over several shard files
    for name in ("cls", "patch", "layer_1"):
        values = cache.read(name, ids).astype(np.float64)
        values = values.reshape(-1, values.shape[-1])
        stats = cache.manifest.stats[name]
        assert stats["tokens"] == len(values)
        np.testing.assert_allclose(stats["mean"], values.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stats["std"], values.std(0), rtol=1e-4, atol=1e-6)
    assert not list((world / "a" / "progress").glob("*.stats.npz"))  # merged, then removed
    out = CliRunner().invoke(main, ["cache", "info", str(world / "a")]).output
    assert "stats      cls: channel mean" in out and "stats      patch:" in out


def test_targets_are_standardised_per_channel_and_restored():
    stats = TargetStats({"cls": torch.tensor([1.0, -2.0])}, {"cls": torch.tensor([2.0, 0.5])})

    decoded = [{"cls": torch.tensor([[3.0, -1.0]]), "patch": torch.ones(1, 4, 2)}]
    out = StudentTargets([(2, 2)], (2, 2), torch.device("cpu"), stats=[stats]).prepare(decoded)
    torch.testing.assert_close(out[0]["cls"], torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(out[0]["patch"], torch.ones(1, 4, 2))  # no stats: untouched
    torch.testing.assert_close(stats.restore("cls", out[0]["cls"]), torch.tensor([[3.0, -1.0]]))


def test_two_caches_standardise_by_default_and_agreement_is_in_teacher_units(world, tmp_path):
    train((world / "a", world / "b"), tmp_path / "r", max_steps=3)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["standardize"] is True and config["config"]["loss"] == "mse"
    saved = Checkpoint.load(tmp_path / "r")
    assert saved.target_stats is not None and len(saved.target_stats) == 2
    cache = Cache(world / "b")
    stored = saved.target_stats[1]
    assert stored is not None
    np.testing.assert_allclose(stored["cls"]["mean"], cache.manifest.stats["cls"]["mean"])
    # Agreement maps the heads' standardised predictions back before comparing.
    trained = load_trained_student(tmp_path / "r")
    result = run_agreement(tmp_path / "r", world / "a", progress=False)
    ids = Cache(world / "a").usable_views()[:4]
    assert np.isfinite(result["token_mse"])
    stats = trained.stats(0)
    assert stats is not None
    raw = torch.from_numpy(Cache(world / "a").read("cls", ids))
    torch.testing.assert_close(stats.restore("cls", stats.standardize("cls", raw)), raw)


def test_one_cache_trains_raw_unless_asked(world, tmp_path):
    train(world / "a", tmp_path / "r", max_steps=2)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["standardize"] is False
    assert Checkpoint.load(tmp_path / "r").target_stats == [None]
    # Resuming with other loss options would mix two objectives in one run: refused.
    for change in ({"standardize": True}, {"loss": "cosine-smooth-l1"}):
        with pytest.raises(ProteusError, match=r"--resume: the checkpoint has (standardize|loss)"):
            train(world / "a", tmp_path / "r", max_steps=4, resume=True, **change)


def test_a_cache_without_statistics_is_refused_with_the_fix(world, tmp_path):
    import shutil

    import zarr

    old = tmp_path / "old"
    shutil.copytree(world / "a", old)
    for path in old.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    root = zarr.open_group(str(old), mode="r+")
    manifest = dict(root.attrs["proteus"])
    for key in ("stats", "aug_preset", "segments", "holdout", "holdout_images", "grown_from"):
        manifest.pop(key)  # as a cache written before these existed
    root.attrs["proteus"] = manifest
    digest = Manifest.from_dict(manifest).digest()
    # What a proteus without statistics computed: the digest of the manifest as it was.
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    assert digest == hashlib.sha256(canonical.encode()).hexdigest()
    seal_path(old).write_text(json.dumps({"manifest_sha256": digest}))
    with pytest.raises(
        ProteusError, match=r"--standardize: .* has no target statistics.*re-extract"
    ):
        train(old, tmp_path / "r", max_steps=1, standardize=True)


def test_onnx_heads_of_a_standardised_run_are_in_teacher_units(world, tmp_path):
    import onnxruntime

    train(world / "a", tmp_path / "r", max_steps=2, standardize=True)
    args = ["export", "--checkpoint", tmp_path / "r", "--out", tmp_path / "o"]
    result = CliRunner().invoke(main, [str(a) for a in [*args, "--format", "onnx", "--heads"]])
    assert result.exit_code == 0, result.output
    session = onnxruntime.InferenceSession(str(tmp_path / "o" / "model.onnx"))
    x = torch.randn(3, 3, 28, 28)
    outputs = dict(
        zip(
            [o.name for o in session.get_outputs()],
            session.run(None, {"images": x.numpy()}),
            strict=True,
        )
    )
    trained = load_trained_student(tmp_path / "r")
    stats = trained.stats(0)
    assert stats is not None
    with torch.no_grad():
        cls = trained.student(x)["cls"]
        want = stats.restore("cls", trained.heads[0].token_head(cls))
    np.testing.assert_allclose(outputs["t1_summary"], want.numpy(), rtol=1e-4, atol=1e-4)


def test_cosine_smooth_l1_is_radios_formula_and_is_recorded(world, tmp_path):
    torch.manual_seed(0)
    pred, target = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    cos = F.cosine_similarity(pred, target, dim=-1)
    smooth = F.smooth_l1_loss(pred, target)
    torch.testing.assert_close(
        token_loss("cosine-smooth-l1", pred, target), 0.9 * (1 - cos).mean() + 0.1 * smooth
    )
    torch.testing.assert_close(token_loss("mse", pred, target), F.mse_loss(pred, target))
    # Through losses(): the summary part is 1 − cosine.
    student = build_student("tiny_vit14", 28)
    model = Distiller(student, [(6, Objective(Lambdas(1, 0, 0), loss="cosine-smooth-l1"), {})])
    clean = student(torch.randn(2, 3, 28, 28))
    t_cls = torch.randn(2, 6)
    parts = losses(model.heads[0], model.objectives[0], StudentOutput(clean), {"cls": t_cls})
    head = model.heads[0].token_head(clean["cls"])
    torch.testing.assert_close(parts["loss_token"], (1 - F.cosine_similarity(head, t_cls)).mean())
    with pytest.raises(ProteusError, match="--loss l2: one of mse, cosine-smooth-l1"):
        Objective(Lambdas(), loss="l2")
    train(world / "a", tmp_path / "r", max_steps=2, loss="cosine-smooth-l1")
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["config"]["loss"] == "cosine-smooth-l1"


def test_balanced_teachers_pull_with_equal_loss(world, tmp_path):
    torch.manual_seed(0)
    student = build_student("tiny_vit14", 28)
    teachers = [(6, Objective(Lambdas(1, 0, 0)), {}), (6, Objective(Lambdas(1, 0, 0)), {})]
    plain, balanced = Distiller(student, teachers), Distiller(student, teachers, balance=True)
    balanced.load_state_dict(plain.state_dict())
    images, masks = torch.randn(2, 3, 28, 28), torch.zeros(0, 4, dtype=torch.bool)
    targets = [{"cls": torch.randn(2, 6)}, {"cls": 10 * torch.randn(2, 6)}]  # 100× the scale
    a, b = plain(images, masks, targets), balanced(images, masks, targets)
    l1, l2 = a["loss_token.t1"], a["loss_token.t2"]
    torch.testing.assert_close(a["loss"], l1 + l2)
    torch.testing.assert_close(b["loss"], l1 + l2)  # the value: Σ mean/Lᵢ · Lᵢ = n · mean
    # The gradient: each teacher weighed by mean / its own loss.
    grad = torch.autograd.grad(b["loss"], balanced.heads[1].token_head[1].weight)[0]
    ref = torch.autograd.grad(a["loss"], plain.heads[1].token_head[1].weight)[0]
    torch.testing.assert_close(grad, ref * ((l1 + l2) / 2 / l2).detach())
    with pytest.raises(ProteusError, match="--balance-teachers weighs several teachers"):
        train(world / "a", tmp_path / "r", max_steps=1, balance_teachers=True)
    train((world / "a", world / "b"), tmp_path / "r2", max_steps=2, balance_teachers=True)
