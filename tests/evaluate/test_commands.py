"""eval knn/linear/agreement, export and viz through the CLI, on a tiny trained run."""

from __future__ import annotations

import json

import imagegen
import numpy as np
import pytest
import timm
import torch
from cli_helpers import error as _error
from cli_helpers import ok as _ok
from click.testing import CliRunner
from extract_helpers import extract
from train_helpers import train

from proteus.app import main
from proteus.evaluate.models import load_trained_student


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    imagegen.tinted_folder(root / "train", classes=3, per_class=6, seed=0)
    imagegen.tinted_folder(root / "val", classes=3, per_class=3, seed=1)
    weights = imagegen.save_teacher_weights("tiny_dinov2", root / "w.safetensors")
    extract(root / "train", root / "cache", weights, views=2)
    extract(root / "val", root / "valcache", weights, views=1, seed=7)
    train(root / "cache", root / "run", max_steps=8)
    return root


def _splits(world):
    return ["--train", world / "train", "--val", world / "val", "--device", "cpu"]


def test_knn_for_teacher_student_and_random_baseline(world, tmp_path):
    # The real offline teacher sees the colour that separates the classes.
    out = _ok(
        [
            "eval",
            "knn",
            "--teacher",
            "effnet_lite0",
            "--image-size",
            64,
            *_splits(world),
            "--json",
            tmp_path / "t.json",
        ]
    )
    assert "teacher effnet_lite0: kNN top-1" in out
    result = json.loads((tmp_path / "t.json").read_text())
    assert result["top1"] > 0.6 and result["val_images"] == 9 and result["k"] == 20
    run = world / "run"
    for checkpoint in (run, run / "checkpoint.pt"):  # a run folder or a file
        out = _ok(["eval", "knn", "--checkpoint", checkpoint, *_splits(world)])
        # The reference recipe evaluates the raw student, not its EMA.
        assert "student tiny_vit14 (raw): kNN top-1" in out
    assert "(ema)" in _ok(["eval", "knn", "--checkpoint", run, "--ema", *_splits(world)])
    out = _ok(
        [
            "eval",
            "knn",
            "--student",
            "tiny_vit14",
            "--random-init",
            "--image-size",
            28,
            *_splits(world),
        ]
    )
    assert "random tiny_vit14" in out


def test_linear_probe(world, tmp_path):
    out = _ok(
        [
            "eval",
            "linear",
            "--checkpoint",
            world / "run",
            *_splits(world),
            "--json",
            tmp_path / "l.json",
        ]
    )
    assert "linear top-1" in out and "on cls_mean_patch" in out
    result = json.loads((tmp_path / "l.json").read_text())
    assert 0 <= result["top1"] <= 1 and result["features"] in ("cls", "cls_mean_patch")


@pytest.mark.parametrize(
    ("source", "protocol"),
    [
        (["--checkpoint", "RUN"], "dinov2"),
        (["--teacher", "tiny_dinov2"], "dinov2"),
        (["--student", "tiny_vit14", "--random-init"], "dinov2"),
        (["--checkpoint", "RUN"], "dinov2-fast"),
    ],
)
def test_dinov2_linear_protocol(world, tmp_path, source, protocol):
    source = [world / "run" if a == "RUN" else a for a in source]
    if "--teacher" in source:
        source += ["--weights", world / "w.safetensors", "--image-size", 28]
    if "--random-init" in source:
        source += ["--image-size", 28]
    args = ["eval", "linear", "--protocol", protocol, "--iterations", 12, "--batch-size", 4]
    out = _ok([*args, *source, *_splits(world), "--json", tmp_path / "d.json"])
    assert f"{protocol} linear top-1" in out and "best on --val as the paper reports" in out
    result = json.loads((tmp_path / "d.json").read_text())
    # 13 learning rates × (last 1 | last 3 blocks (the tiny models' depth)) × (± avgpool)
    features = {g["features"] for g in result["grid"]}
    assert len(result["grid"]) == 13 * len(features) and "blocks1_avgpool" in features
    assert result["top1_best_on_val"] >= result["top1"] and result["iterations"] == 12
    assert result["protocol"] == protocol and result["holdout_images"] >= 1


def test_the_dinov2_protocol_trains_on_fresh_views_of_every_batch(world, monkeypatch):
    """Features are computed on the fly: the model runs once per iteration, on batches of
    --batch-size training views, and never twice on the same view of an image."""
    from proteus.evaluate import features as features_module
    from proteus.evaluate.config import ProbeConfig, SourceConfig
    from proteus.evaluate.runner import run_linear

    drawn: list[tuple[int, int]] = []
    original = features_module.view_records

    def record(policy, seed, images, views, sizes, size):
        drawn.extend(zip(images.tolist(), views.tolist(), strict=True))
        assert policy == features_module.TRAIN_VIEWS
        return original(policy, seed, images, views, sizes, size)

    monkeypatch.setattr(features_module, "view_records", record)
    train_dir, val_dir = _splits(world)[1], _splits(world)[3]
    cfg = ProbeConfig(
        SourceConfig(checkpoint=world / "run"),
        train_dir,
        val_dir,
        batch_size=4,
        device="cpu",
        protocol="dinov2",
        iterations=6,
        progress=False,
    )
    result = run_linear(cfg)
    assert result["protocol"] == "dinov2" and len(drawn) >= 6 * 4
    assert len(set(drawn)) == len(drawn)  # (image, view) pairs: every view is a new one


def test_too_few_images_for_the_protocols_batch_is_one_line(world, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "linear",
            "--protocol",
            "dinov2",
            "--checkpoint",
            str(world / "run"),
            *map(str, _splits(world)),
        ],
    )
    assert result.exit_code == 1 and "fewer than its batch of 128" in result.output
    assert "--protocol dinov2-fast" in result.output and "Traceback" not in result.output


def test_dinov2_protocol_features_are_the_normed_class_tokens_of_the_last_blocks(world):
    from proteus.evaluate.models import load_source

    source = load_source(checkpoint=world / "run")
    x = torch.randn(2, 3, 28, 28)
    out = source.features(x, blocks=2)
    student = source.model
    hidden = student.vit.norm_pre(student.vit._pos_embed(student.vit.patch_embed(x)))
    for block in student.vit.blocks[:-1]:
        hidden = block(hidden)
    torch.testing.assert_close(out["blocks"][0], student.vit.norm(hidden)[:, 0])
    torch.testing.assert_close(out["blocks"][1], out["cls"])  # the last block's is the cls


def test_agreement_on_held_out_views(world, tmp_path):
    out = _ok(
        [
            "eval",
            "agreement",
            "--checkpoint",
            world / "run",
            "--cache",
            world / "valcache",
            "--device",
            "cpu",
            "--json",
            tmp_path / "a.json",
        ]
    )
    result = json.loads((tmp_path / "a.json").read_text())
    for name in ("token", "fea", "patch"):
        assert -1 <= result[f"{name}_cosine"] <= 1 and result[f"{name}_mse"] >= 0
        assert f"{name}: cosine" in out
    assert result["views"] == 9


def test_agreement_refuses_another_teachers_cache(world, tmp_path):
    other = imagegen.save_teacher_weights("tiny_dinov2", tmp_path / "o.safetensors", seed=3)
    extract(world / "val", tmp_path / "other", other, views=1)
    out = _error(
        [
            "eval",
            "agreement",
            "--checkpoint",
            world / "run",
            "--cache",
            tmp_path / "other",
            "--device",
            "cpu",
        ]
    )
    assert "another teacher" in out


def test_export_loads_in_timm_with_the_same_features(world, tmp_path):
    _ok(["export", "--checkpoint", world / "run", "--out", tmp_path / "exp"])
    assert (tmp_path / "exp" / "model.safetensors").is_file()
    model = timm.create_model(f"local-dir:{tmp_path / 'exp'}", pretrained=True).eval()
    ours = load_trained_student(world / "run").student
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        theirs = model.forward_features(x)
        mine = ours(x)
    torch.testing.assert_close(theirs[:, 0], mine["cls"])
    torch.testing.assert_close(theirs[:, model.num_prefix_tokens :], mine["patch"])
    cfg = json.loads((tmp_path / "exp" / "config.json").read_text())
    assert cfg["pretrained_cfg"]["mean"] == [0.485, 0.456, 0.406]
    assert model.pretrained_cfg["input_size"] == (3, 28, 28)


def test_onnx_export_of_a_vit_runs_in_onnxruntime(world, tmp_path):
    import onnxruntime

    out = _ok(
        ["export", "--checkpoint", world / "run", "--out", tmp_path / "o", "--format", "onnx"]
    )
    assert "checked with onnxruntime" in out and "batches 2, 3" in out
    session = onnxruntime.InferenceSession(str(tmp_path / "o" / "model.onnx"))
    assert [o.name for o in session.get_outputs()] == ["summary", "dense"]
    x = torch.randn(4, 3, 28, 28)
    summary, dense = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        mine = load_trained_student(world / "run").student(x)
    torch.testing.assert_close(torch.from_numpy(summary), mine["cls"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.from_numpy(dense), mine["patch"], rtol=1e-4, atol=1e-4)
    assert "only with --format onnx" in _error(
        ["export", "--checkpoint", world / "run", "--out", tmp_path / "t", "--heads"]
    )


def test_viz_writes_pngs(world, tmp_path):
    out = _ok(["viz", "--checkpoint", world / "run", "--out", tmp_path / "pics", "--views", 2])
    for name in ("pca.png", "losses.png"):
        data = (tmp_path / "pics" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, name
        assert name in out


def test_viz_puts_targets_and_predictions_in_the_teachers_basis(world):
    from proteus.evaluate.viz import Basis, _patch_predictions, pca_rgb

    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(3, 4, 8)).astype(np.float32)
    basis = Basis.fit(teacher)
    np.testing.assert_allclose(basis.rgb(teacher, (2, 2)), pca_rgb(teacher, (2, 2)))
    # A prediction equal to the target is painted the same colours; a different one is not
    # rescaled into the full range (its colours keep the teacher's meaning).
    assert np.allclose(basis.rgb(teacher.copy(), (2, 2)), basis.rgb(teacher, (2, 2)))
    shifted = basis.rgb(teacher + 100 * basis.components[0], (2, 2))
    assert shifted[..., 0].min() == 1.0  # clipped at the teacher's range, not min-max scaled
    # The run's feature head predicts teacher-width patches on the student's grid.
    trained = load_trained_student(world / "run")
    x = torch.zeros(1, 3, trained.student.image_size, trained.student.image_size)
    with torch.no_grad():
        name, values = _patch_predictions(trained, trained.student(x)["patch"])
    assert name == "fea head"
    assert values.shape == (1, trained.student.grid[0] * trained.student.grid[1], 32)


def test_eval_seg_of_a_run_is_kept_in_it_pictured_and_compared(world, tmp_path):
    seg = imagegen.seg_folder(tmp_path / "seg", size=28)
    short = ["--iterations", 2, "--batch-size", 4, "--device", "cpu"]
    out = _ok(["eval", "seg", "--checkpoint", world / "run", "--data", seg, "--classes", 3, *short])
    assert "mIoU" in out
    result = json.loads((world / "run" / "eval" / "seg.json").read_text())
    assert result["model"].startswith("student tiny_vit14") and result["train_images"] == 8
    picture = (world / "run" / "eval" / "seg.png").read_bytes()
    assert picture[:8] == b"\x89PNG\r\n\x1a\n"
    depth = imagegen.depth_folder(tmp_path / "depth", size=28)
    _ok(
        ["eval", "depth", "--checkpoint", world / "run", "--data", depth, "--name", "ramps", *short]
    )
    table = _ok(["compare", world / "run"])
    assert "seg_miou" in table and "ramps_rmse" in table and "ramps_delta1" in table


def test_one_line_errors(world, tmp_path):
    assert "no checkpoint there" in _error(
        ["eval", "knn", "--checkpoint", tmp_path / "none", *_splits(world)]
    )
    assert "--train" in _error(
        [
            "eval",
            "knn",
            "--teacher",
            "tiny_dinov2",
            "--weights",
            world / "w.safetensors",
            "--image-size",
            28,
            "--train",
            tmp_path / "nope",
            "--val",
            world / "val",
        ]
    )
    assert "choose one feature source" in _error(["eval", "knn", *_splits(world)])
    assert "needs --random-init" in _error(
        ["eval", "knn", "--student", "tiny_vit14", *_splits(world)]
    )
    assert "no checkpoint there" in _error(
        ["export", "--checkpoint", tmp_path / "x", "--out", tmp_path / "e"]
    )
    flat = tmp_path / "flat"
    imagegen.save(imagegen.photo(30, 30, 0), flat / "a.jpg")
    assert "needs labels" in _error(
        ["eval", "knn", "--checkpoint", world / "run", "--train", flat, "--val", world / "val"]
    )


def test_a_clip_student_exports_with_the_layernorm_eps_it_trained_with(tmp_path):
    # CLIP students are built as the reference builds them (torch LayerNorms, eps 1e-5); timm
    # builds its ViTs' LayerNorms with 1e-6, so the export says which eps to set, and its
    # read-back check sets it: the exported model then reproduces the student exactly.
    data = imagegen.image_folder(tmp_path / "data", classes=2, per_class=3)
    weights = imagegen.save_teacher_weights("tiny_clip", tmp_path / "clip.safetensors")
    extract(data, tmp_path / "cache", weights, teacher="tiny_clip", views=2, layers=())
    train(tmp_path / "cache", tmp_path / "run", max_steps=2)
    assert load_trained_student(tmp_path / "run").checkpoint.student_style == "clip-ref"
    result = CliRunner().invoke(
        main, ["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "e")]
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    assert config["proteus"]["norm_eps"] == 1e-5
    model = timm.create_model(f"local-dir:{tmp_path / 'e'}", pretrained=True)
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-6}
