"""A convnet student end to end: train (all losses and a stage hint), resume, eval knn /
linear / agreement, viz, and both exports read back (timm, onnxruntime)."""

from __future__ import annotations

import json
import math

import imagegen
import numpy as np
import pytest
import timm
import torch
from cli_helpers import ok as _ok
from extract_helpers import extract
from train_helpers import train

from proteus.common.models.parts import Hint
from proteus.common.runs.checkpoint import Checkpoint
from proteus.common.runs.logs import read_log
from proteus.common.runtime.errors import ProteusError
from proteus.evaluate.check import compare
from proteus.evaluate.models import load_trained_student

STUDENT = "tiny_resnet"  # timm's test_resnet: BatchNorm, five stages, stride 32


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("convnet")
    imagegen.tinted_folder(root / "train", classes=3, per_class=6, seed=0)
    imagegen.tinted_folder(root / "val", classes=3, per_class=3, seed=1)
    weights = imagegen.save_teacher_weights("tiny_dinov2", root / "w.safetensors")
    extract(root / "train", root / "cache", weights, views=2, layers=(1,))
    extract(root / "val", root / "valcache", weights, views=1, seed=7)
    train(root / "cache", root / "run", student=STUDENT, max_steps=8, hints=(Hint.parse("2:1"),))
    return root


def test_training_computes_every_loss_on_the_teachers_grid(world):
    records = read_log(world / "run")
    assert len(records) == 8
    for part in ("loss_token", "loss_fea", "loss_patch", "loss_hint"):
        assert all(math.isfinite(r[part]) and r[part] > 0 for r in records), part
    saved = Checkpoint.load(world / "run")
    assert saved.student_style == "arch"  # the reference's styles are for ViTs
    assert saved.grid == (2, 2)  # tiny_dinov2's 28 px / 14: the student's 1×1 map resampled
    config = json.loads((world / "run" / "config.json").read_text())
    assert config["student_grid"] == [2, 2]
    # The stage hint's head reads stage 2's width (48), not the dense width (96).
    trained = load_trained_student(world / "run")
    head = trained.heads[0].hint_heads["block2_layer1"]
    assert head[0].normalized_shape == (trained.student.block_dim(2),) == (48,)
    assert trained.heads[0].fea_head[0].normalized_shape == (96,)


def test_resume_continues_exactly(world, tmp_path):
    straight = world / "run"
    hints = (Hint.parse("2:1"),)
    train(world / "cache", tmp_path / "r", student=STUDENT, max_steps=4, hints=hints)
    train(world / "cache", tmp_path / "r", student=STUDENT, max_steps=8, hints=hints, resume=True)
    ours = [r["loss"] for r in read_log(tmp_path / "r")]
    assert ours == pytest.approx([r["loss"] for r in read_log(straight)], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("probe", ["knn", "linear"])
def test_knn_and_linear(world, tmp_path, probe):
    splits = ["--train", world / "train", "--val", world / "val", "--device", "cpu"]
    _ok(["eval", probe, "--checkpoint", world / "run", *splits, "--json", tmp_path / "r.json"])
    result = json.loads((tmp_path / "r.json").read_text())
    assert 0 <= result["top1"] <= 1
    # The random-init floor builds the same way.
    _ok(["eval", probe, "--student", STUDENT, "--random-init", "--image-size", 28, *splits])


def test_dinov2_protocol_reads_the_last_stages_pooled(world):
    from proteus.evaluate.models import load_source

    source = load_source(checkpoint=world / "run")
    x = torch.randn(2, 3, 28, 28)
    out = source.features(x, blocks=2)
    _, stages = source.model.net.forward_intermediates(x)
    assert [t.shape[1] for t in out["blocks"]] == [192, 96]
    torch.testing.assert_close(out["blocks"][0], stages[3].mean((2, 3)))


def test_agreement(world, tmp_path):
    cpu = ["--device", "cpu", "--json", tmp_path / "a.json"]
    _ok(["eval", "agreement", "--checkpoint", world / "run", "--cache", world / "valcache", *cpu])
    result = json.loads((tmp_path / "a.json").read_text())
    for name in ("token", "fea", "patch"):
        assert -1 <= result[f"{name}_cosine"] <= 1 and result[f"{name}_mse"] >= 0


def test_viz(world, tmp_path):
    _ok(["viz", "--checkpoint", world / "run", "--out", tmp_path / "pics", "--views", 2])
    assert (tmp_path / "pics" / "pca.png").read_bytes()[:4] == b"\x89PNG"


def test_timm_export_rebuilds_the_backbone(world, tmp_path):
    out = _ok(["export", "--checkpoint", world / "run", "--out", tmp_path / "exp"])
    assert "checked with timm.create_model: max |difference|" in out
    model = timm.create_model(f"local-dir:{tmp_path / 'exp'}", pretrained=True).eval()
    ours = load_trained_student(world / "run").student
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), ours.net.forward_features(x))
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), ours(x)["cls"])
    assert (tmp_path / "exp" / "proteus_heads.safetensors").is_file()


def test_onnx_export_with_heads_runs_in_onnxruntime(world, tmp_path):
    import onnxruntime

    run, to = world / "run", tmp_path / "o"
    out = _ok(["export", "--checkpoint", run, "--out", to, "--format", "onnx", "--heads"])
    assert "checked with onnxruntime" in out
    session = onnxruntime.InferenceSession(str(tmp_path / "o" / "model.onnx"))
    names = [o.name for o in session.get_outputs()]
    assert names == ["summary", "dense", "feature_map", "t1_summary", "t1_dense"]
    trained = load_trained_student(world / "run")
    x = torch.randn(5, 3, 28, 28)  # a batch size it was never run with
    got = dict(zip(names, session.run(None, {"images": x.numpy()}), strict=True))
    with torch.no_grad():
        mine = trained.student(x)
        heads = trained.heads[0]
        want = {
            "summary": mine["cls"],
            "dense": mine["patch"],
            "feature_map": mine["feature_map"],
            "t1_summary": heads.token_head(mine["cls"]),
            "t1_dense": heads.fea_head(mine["patch"]),
        }
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)
    config = json.loads((tmp_path / "o" / "config.json").read_text())
    assert config["proteus"]["format"] == "onnx" and config["proteus"]["grid"] == [2, 2]


def test_a_difference_above_the_tolerance_is_an_error():
    want = torch.ones(2, 3)
    assert compare("x", [want.numpy()], [want], 1e-4, (2,)).max_abs_diff == 0
    with pytest.raises(ProteusError, match=r"export check failed: x: max \|difference\| 0.01"):
        compare("x", [(want + 0.01).numpy()], [want], 1e-4, (2,))
    with pytest.raises(ProteusError, match="export check failed"):
        compare("x", [(want * np.nan).numpy()], [want], 1e-4, (2,))
