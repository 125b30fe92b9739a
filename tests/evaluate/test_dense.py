"""eval seg / eval depth: heads, losses and metrics against hand-computed values, a probe that
must reach mIoU 1.0 on features that separate the classes, the CLI on tiny models, the data
layouts and their bad inputs, and eval suite."""

from __future__ import annotations

import json
import math

import imagegen
import numpy as np
import pytest
import torch
from cli_helpers import error as _error
from cli_helpers import ok as _ok
from PIL import Image
from torch import nn

from proteus.evaluate.config import DenseConfig, SourceConfig
from proteus.evaluate.dense_heads import (
    DepthHead,
    DepthMetric,
    SegHead,
    SegMetric,
    depth_loss,
    resize_concat,
    seg_loss,
)
from proteus.evaluate.dense_probe import DEPTH, SEG, lr_at, run_seg
from proteus.evaluate.dense_sets import find_depth, find_seg
from proteus.evaluate.models import FeatureSource


class MeanColour(nn.Module):
    """A frozen 'model' whose patch features are each 8 × 8 patch's mean colour: on stripe
    images they separate the classes perfectly."""

    def forward(self, x):
        maps = nn.functional.avg_pool2d(x, 8)
        patch = maps.flatten(2).transpose(1, 2)
        return {"cls": maps.mean((2, 3)), "patch": patch, "layers": {}}


# ------------------------------------------------------------------ heads, losses, metrics
def test_heads_resize_concat_and_upsample_to_the_label_size():
    maps = [torch.randn(2, 5, 4, 4), torch.randn(2, 3, 2, 2)]
    assert resize_concat(maps).shape == (2, 8, 4, 4)
    assert SegHead(8, 7)(maps, (30, 20)).shape == (2, 7, 30, 20)
    head = DepthHead(2 * 8, min_depth=0.5, max_depth=10.0)
    blocks = [(m, torch.randn(2, m.shape[1])) for m in maps]  # cls concatenated to each
    out = head(blocks, (13, 17))
    assert out.shape == (2, 1, 13, 17)
    assert (out >= 0.5).all() and (out <= 10.0).all()


def test_depth_bins_and_the_linear_normalisation_by_hand():
    head = DepthHead(4, min_depth=1.0, max_depth=4.0, bins=4)
    assert head.bins.tolist() == [1.0, 2.0, 3.0, 4.0]  # uniform bins, ends included
    logits = torch.tensor([-5.0, 0.0, 0.9, 1.9]).view(1, 4, 1, 1)
    # relu → [0, 0, 0.9, 1.9]; + 0.1 → [0.1, 0.1, 1.0, 2.0]; sum 3.2
    expected = (0.1 * 1 + 0.1 * 2 + 1.0 * 3 + 2.0 * 4) / 3.2
    assert head.expectation(logits).item() == pytest.approx(expected)


def test_seg_metric_by_hand_and_the_ignore_index():
    metric = SegMetric(classes=3, ignore_index=255)
    label = np.array([[0, 0, 1, 255], [1, 1, 2, 255]])
    pred = np.array([[0, 1, 1, 2], [1, 1, 0, 0]])
    metric.update(pred, label)
    r = metric.result()
    # class 0: I 1, U (pred 2 + label 2 − 1) = 3; class 1: I 3, U (4 + 3 − 3) = 4;
    # class 2: I 0, U (0 + 1 − 0) = 1 (the ignored pixels' predictions do not count).
    assert r["per_class_iou"] == [pytest.approx(1 / 3, abs=1e-4), 0.75, 0.0]
    assert r["miou"] == pytest.approx((1 / 3 + 0.75 + 0) / 3)
    assert r["pixel_accuracy"] == pytest.approx(4 / 6)
    # A class neither labelled nor predicted is left out of the mean (mmseg's nanmean).
    only = SegMetric(classes=4, ignore_index=255)
    only.update(np.zeros((2, 2), int), np.zeros((2, 2), int))
    assert only.result()["miou"] == 1.0 and only.result()["per_class_iou"][3] is None
    # The loss ignores it too.
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 0, 0, 0] = 10.0
    ignored = seg_loss(logits, torch.tensor([[[0, 255]]]), 255)
    assert ignored.item() == pytest.approx(-math.log(math.exp(10) / (math.exp(10) + 2)), rel=1e-2)


def test_depth_metrics_by_hand():
    metric = DepthMetric()
    target = np.array([[1.0, 2.0], [4.0, 0.0]])  # 0: no measurement
    pred = np.array([[1.0, 3.0], [2.0, 9.0]])
    metric.update(pred, target)
    r = metric.result()
    assert r["rmse"] == pytest.approx(math.sqrt((0 + 1 + 4) / 3))
    assert r["abs_rel"] == pytest.approx((0 + 0.5 + 0.5) / 3)
    assert r["delta1"] == pytest.approx(1 / 3)  # ratios 1, 1.5, 2
    masked = DepthMetric()
    masked.update(pred, target, mask=np.array([[True, False], [False, False]]))
    assert masked.result()["rmse"] == 0.0


def test_depth_loss_is_zero_for_a_perfect_prediction_and_scale_invariant_after_warm_up():
    target = torch.rand(2, 1, 8, 8) * 5 + 1
    assert depth_loss(target.clone(), target, iteration=500).item() == pytest.approx(0, abs=1e-5)
    scaled = depth_loss(target * 2, target, iteration=500).item()
    # A global scale error costs only the (1 − λ) mean term: sqrt(0.15) · log 2.
    assert scaled == pytest.approx(math.sqrt(0.15) * math.log(2), rel=1e-4)


def test_schedules_follow_the_protocols():
    assert lr_at(SEG, 0, 40_000) == pytest.approx(1e-3 * 1e-6)
    assert lr_at(SEG, 1_500, 40_000) == pytest.approx(1e-3 * (1 - 1_500 / 40_000))
    assert lr_at(SEG, 20_000, 40_000) == pytest.approx(0.5e-3)
    assert lr_at(DEPTH, 0, 38_400) == pytest.approx(5e-3 * 1e-3)
    assert lr_at(DEPTH, 19_200, 38_400) == pytest.approx(2.5e-3)


# ------------------------------------------------------------------ probes
def test_a_probe_on_separating_features_reaches_miou_one(tmp_path):
    data = imagegen.seg_folder(tmp_path / "stripes", images=12)
    source = FeatureSource("mean colour", MeanColour(), 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    cfg = DenseConfig(
        SourceConfig(),
        data,
        classes=3,
        iterations=150,
        batch_size=8,
        lr=0.05,
        device="cpu",
        progress=False,
    )
    result = run_seg(cfg, source)
    assert result["miou"] == 1.0 and result["pixel_accuracy"] == 1.0
    assert result["per_class_iou"] == [1.0, 1.0, 1.0]


def test_eval_seg_and_depth_through_the_cli(tmp_path):
    seg = imagegen.seg_folder(tmp_path / "seg")
    depth = imagegen.depth_folder(tmp_path / "depth")
    common = ["--student", "tiny_vit16", "--random-init", "--image-size", 32, "--device", "cpu"]
    seg_args = ["eval", "seg", "--data", seg, "--classes", 3, "--batch-size", 4, *common]
    out = _ok([*seg_args, "--iterations", 3, "--json", tmp_path / "seg.json"])
    assert "mIoU" in out
    result = json.loads((tmp_path / "seg.json").read_text())
    assert result["task"] == "seg" and 0 <= result["miou"] <= 1 and result["val_images"] == 4
    assert len(result["per_class_iou"]) == 3
    depth_args = ["eval", "depth", "--data", depth, "--iterations", 3, "--batch-size", 4]
    out = _ok([*depth_args, *common, "--json", tmp_path / "depth.json"])
    assert "RMSE" in out
    result = json.loads((tmp_path / "depth.json").read_text())
    assert result["blocks"] == 1 and result["rmse"] > 0 and 0 <= result["delta1"] <= 1
    # The +ms variant's test: five scales and flips.
    _ok([*seg_args, "--iterations", 2, "--multiscale"])


def test_four_blocks_of_a_convnet_and_too_many_blocks(tiny_weights, tmp_path):
    from proteus.common.runtime.errors import ProteusError
    from proteus.evaluate.models import load_source

    convnet = load_source(student="tiny_resnet", random_init=True, image_size=64)
    blocks = convnet.dense(torch.zeros(2, 3, 64, 64), blocks=4)
    assert len(blocks) == 4 and all(m.ndim == 4 and c.shape[0] == 2 for m, c in blocks)
    depth = imagegen.depth_folder(tmp_path / "depth", size=64)
    source = ["--student", "tiny_resnet", "--random-init", "--image-size", 64]
    _ok(
        [
            "eval",
            "depth",
            "--data",
            depth,
            *source,
            "--blocks",
            4,
            "--iterations",
            2,
            "--device",
            "cpu",
        ]
    )
    teacher = load_source(teacher="tiny_dinov2", weights=tiny_weights, image_size=28, blocks=4)
    with pytest.raises(ProteusError, match="--blocks 4: teacher tiny_dinov2 returns 3 blocks"):
        teacher.dense(torch.zeros(1, 3, 28, 28), blocks=4)
    vit = load_source(student="tiny_vit16", random_init=True, image_size=32)
    with pytest.raises(ProteusError, match="--blocks 4: random tiny_vit16 has 2 blocks"):
        vit.dense(torch.zeros(1, 3, 32, 32), blocks=4)


# ------------------------------------------------------------------ layouts and bad input
def test_ade20k_layout_reduces_the_zero_label(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    for split in ("training", "validation"):
        imagegen.save(imagegen.photo(16, 16, 0), root / "images" / split / "ADE_1.jpg")
        imagegen.save(
            np.array([[0, 1], [150, 2]], np.uint8).repeat(8, 0).repeat(8, 1),
            root / "annotations" / split / "ADE_1.png",
        )
    found = find_seg(root, "val", classes=None, ignore_index=255)
    assert found.layout == "ade20k" and found.classes == 150
    label = found.label(0)
    assert set(np.unique(label)) == {255, 0, 149, 1}


def test_nyu_layout_and_its_eval_crop(tmp_path):
    root = tmp_path / "nyu"
    imagegen.save(imagegen.photo(480, 640, 0), root / "kitchen" / "rgb_1.jpg")
    Image.fromarray(np.full((480, 640), 2500, np.uint16)).save(root / "kitchen" / "d_1.png")
    for name in ("nyu_train.txt", "nyu_test.txt"):
        (root / name).write_text("/kitchen/rgb_1.jpg /kitchen/d_1.png 518.8579\n")
    found = find_depth(root, "val", depth_scale=None, min_depth=1e-3, max_depth=10)
    assert found.layout == "nyu" and found.depth(0)[0, 0] == pytest.approx(2.5)
    mask = found.eval_mask((480, 640))
    assert mask.sum() == (471 - 45) * (601 - 41)


def test_bad_dense_inputs_are_one_line_errors_naming_the_file(tmp_path):
    seg = imagegen.seg_folder(tmp_path / "seg")
    args = ["eval", "seg", "--student", "tiny_vit16", "--random-init", "--image-size", 32]
    args += ["--device", "cpu", "--iterations", 1, "--batch-size", 2]
    # classes outside the stated count
    out = _error([*args, "--data", seg, "--classes", 2])
    assert "outside the 2 classes" in out and ".png" in out
    # a generic layout without --classes
    assert "--classes" in _error([*args, "--data", seg])
    # a label map whose size differs from its image
    imagegen.save(np.zeros((16, 16), np.uint8), seg / "val" / "labels" / "000.png")
    out = _error([*args, "--data", seg, "--classes", 3])
    assert "000.png" in out and "16×16" in out and "32×32" in out
    # mismatched names
    seg = imagegen.seg_folder(tmp_path / "seg2")
    (seg / "train" / "labels" / "001.png").rename(seg / "train" / "labels" / "x01.png")
    out = _error([*args, "--data", seg, "--classes", 3])
    assert "001.png" in out and "names must match" in out
    # an empty split
    empty = tmp_path / "empty"
    for part in ("images", "labels"):
        (empty / "train" / part).mkdir(parents=True)
    assert "empty" in _error([*args, "--data", empty, "--classes", 3])
    # depth PNGs that are not 16-bit
    depth = imagegen.depth_folder(tmp_path / "depth")
    imagegen.save(np.zeros((32, 32), np.uint8), depth / "train" / "depth" / "1.png")
    out = _error(["eval", "depth", "--data", depth, *args[2:]])
    assert "1.png" in out and "16-bit" in out


# ------------------------------------------------------------------ suite
def test_eval_suite_runs_every_entry_prints_one_table_and_skips_finished_ones(tmp_path):
    imagegen.seg_folder(tmp_path / "seg")
    imagegen.tinted_folder(tmp_path / "cls" / "train", classes=2, per_class=4, seed=0)
    imagegen.tinted_folder(tmp_path / "cls" / "val", classes=2, per_class=2, seed=1)
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "models:\n"
        "  random16: {student: tiny_vit16, random_init: true, image_size: 32}\n"
        "  random7: {student: tiny_vit7, random_init: true, image_size: 28}\n"
        "datasets:\n"
        "  tints: {protocols: [knn], train: cls/train, val: cls/val, k: 3}\n"
        "  stripes: {protocols: [seg], data: seg, classes: 3, iterations: 2, batch_size: 4}\n"
    )
    out = _ok(["eval", "suite", suite, "--out", tmp_path / "out", "--device", "cpu"])
    assert "tints/knn top1" in out and "stripes/seg miou" in out
    assert (tmp_path / "out" / "results" / "random7" / "stripes_seg.json").is_file()
    table = (tmp_path / "out" / "suite.csv").read_text().splitlines()
    assert table[0] == "model,tints/knn top1,stripes/seg miou" and len(table) == 3
    again = _ok(["eval", "suite", suite, "--out", tmp_path / "out", "--device", "cpu"])
    assert again.count("done before") == 4


def test_bad_suite_files_name_the_key(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "models:\n  a: {student: tiny_vit16, random_init: true}\ndatasets:\n"
        "  x: {protocols: [segm], data: .}\n"
    )
    assert "unknown protocol 'segm'" in _error(["eval", "suite", suite, "--out", tmp_path / "o"])
    suite.write_text(
        "models:\n  a: {student: tiny_vit16, random_init: true}\ndatasets:\n"
        "  x: {protocols: [seg], data: ., colour: 3}\n"
    )
    assert "unknown option 'colour'" in _error(["eval", "suite", suite, "--out", tmp_path / "o"])
    suite.write_text("models:\n  a: {studnet: tiny_vit16}\ndatasets:\n  x: {protocols: [knn]}\n")
    assert "models.a: unknown key 'studnet'" in _error(
        ["eval", "suite", suite, "--out", tmp_path / "o"]
    )


def test_the_example_suite_for_the_paper_loads():
    from pathlib import Path

    from proteus.evaluate.suite import load_suite

    example = Path(__file__).parents[2] / "examples" / "paper_suite.yaml"
    suite = load_suite(example, device="cpu")
    # 3 models × (12 fine-grained sets × 2 protocols + ADE20K × 2 + NYUd × 2)
    assert len(suite.entries) == 3 * (12 * 2 + 2 + 2)
    assert {e.protocol for e in suite.entries} == {
        "knn",
        "dinov2",
        "seg",
        "seg_ms",
        "depth",
        "depth_b4",
    }
