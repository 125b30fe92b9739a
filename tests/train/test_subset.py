"""Subsets of a cache: deterministic, as promised, recorded in the run config."""

from __future__ import annotations

import json

import imagegen
import numpy as np
import pytest
from extract_helpers import extract
from train_helpers import train

from proteus.common.runtime.errors import ProteusError
from proteus.train.subset import Subset, select_images

LABELS = np.repeat(np.arange(5), 10)  # 5 classes × 10 images


def test_classes_then_per_class_then_fraction():
    rows, info = select_images(LABELS, Subset(classes=3), seed=0)
    assert len(info["classes"]) == 3 and set(LABELS[rows]) == set(info["classes"])
    assert len(rows) == 30
    rows, _ = select_images(LABELS, Subset(per_class=4), seed=0)
    assert np.bincount(LABELS[rows]).tolist() == [4] * 5
    rows, info = select_images(LABELS, Subset(classes=2, per_class=3, fraction=0.5), seed=0)
    assert len(rows) == 3 and info["images"] == 3 and set(LABELS[rows]) <= set(info["classes"])


def test_subsets_are_seeded():
    a, _ = select_images(LABELS, Subset(classes=2, per_class=3), seed=1)
    b, _ = select_images(LABELS, Subset(classes=2, per_class=3), seed=1)
    c, _ = select_images(LABELS, Subset(classes=2, per_class=3), seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_refusals():
    with pytest.raises(ProteusError, match="the cache has 5 classes"):
        select_images(LABELS, Subset(classes=6), seed=0)
    with pytest.raises(ProteusError, match="need labels"):
        select_images(np.full(10, -1), Subset(per_class=2), seed=0)
    with pytest.raises(ProteusError, match=r"must be in \(0, 1\]"):
        select_images(LABELS, Subset(fraction=1.5), seed=0)


def test_training_on_a_subset_records_it(tmp_path):
    data = imagegen.image_folder(tmp_path / "data", classes=3, per_class=4)
    weights = imagegen.save_teacher_weights("tiny_dinov2", tmp_path / "w.safetensors")
    extract(data, tmp_path / "cache", weights, views=2)
    train(tmp_path / "cache", tmp_path / "run", max_steps=2, subset_classes=2, subset_per_class=3)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["images"] == 6 and len(config["subset"]["classes"]) == 2
    assert config["config"]["subset_classes"] == 2 and config["steps_per_epoch"] == 1
