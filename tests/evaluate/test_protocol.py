"""The DINOv2 linear protocol held to DINOv2's own values, and trained on views, not crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from proteus.evaluate.features import TRAIN_VIEWS
from proteus.evaluate.protocol import DINOV2, epochs_of, feature_sets, train_classifiers

# facebookresearch/dinov2 at b8931f7, dinov2/eval/linear.py: get_args_parser's set_defaults
# (epochs, batch_size, epoch_length, learning_rates), run_eval_linear (n_last_blocks_list,
# the SGD optimiser, CosineAnnealingLR(max_iter, eta_min=0)), LinearClassifier (weights
# normal_(0, 0.01), zero bias), scale_lr (lr × batch × world / 256); dinov2/data/
# transforms.py make_classification_train_transform (RandomResizedCrop(224, BICUBIC),
# RandomHorizontalFlip(0.5)).
DINOV2_VALUES = {
    "epochs": 10,
    "epoch_length": 1250,
    "batch_size": 128,
    "learning_rates": (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1),
    "n_last_blocks": (1, 4),
    "momentum": 0.9,
    "weight_decay": 0.0,
    "init_std": 0.01,
    "crop_scale": (0.08, 1.0),
    "flip_prob": 0.5,
}


@pytest.mark.parametrize("name", sorted(DINOV2_VALUES))
def test_the_defaults_are_dinov2s(name):
    assert getattr(DINOV2, name) == DINOV2_VALUES[name]


def test_the_budget_the_lr_scale_and_the_training_views():
    assert DINOV2.iterations == 12_500 and len(DINOV2.learning_rates) == 13
    assert DINOV2.lr(0.1, 1024) == pytest.approx(0.4)  # 8 GPUs × 128
    # RandomResizedCrop with torchvision's defaults, bicubic, and a flip: nothing else.
    assert TRAIN_VIEWS.crop_scale == (0.08, 1.0) and TRAIN_VIEWS.interpolation == "cubic"
    assert TRAIN_VIEWS.crop_ratio == pytest.approx((3 / 4, 4 / 3)) and TRAIN_VIEWS.flip_prob == 0.5
    assert TRAIN_VIEWS.randaug_layers == 0 and TRAIN_VIEWS.erase_prob == 0
    assert TRAIN_VIEWS.jitter_prob == 0 and TRAIN_VIEWS.grayscale_prob == 0


def test_feature_sets_are_create_linear_input():
    blocks = [torch.full((2, 3), float(i)) for i in range(5)]
    mean_patch = torch.full((2, 3), 9.0)
    sets = feature_sets(blocks, mean_patch)
    assert list(sets) == ["blocks1", "blocks1_avgpool", "blocks4", "blocks4_avgpool"]
    assert sets["blocks1"].tolist() == [[4.0] * 3] * 2
    assert sets["blocks4"][0].tolist() == [1.0] * 3 + [2.0] * 3 + [3.0] * 3 + [4.0] * 3
    assert sets["blocks4_avgpool"].shape == (2, 15) and sets["blocks4_avgpool"][0, -1] == 9


def test_batches_are_epochs_of_seeded_permutations_without_their_incomplete_batch():
    batches = epochs_of(10, 4, seed=0)
    first = [next(batches) for _ in range(2)]  # 10 // 4 = 2 full batches an epoch
    assert len(np.unique(np.concatenate(first))) == 8
    second = [next(batches) for _ in range(2)]
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))


def test_classifiers_that_can_separate_the_classes_do():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (64,), generator=gen)
    features = {"blocks1": torch.nn.functional.one_hot(labels, 3).float() * 3}

    def batches():
        while True:
            yield features, labels

    model = train_classifiers(batches(), {"blocks1": 3}, 3, iterations=200, global_batch=64)
    assert len(model.heads) == 13
    with torch.no_grad():
        best = max(float((out.argmax(1) == labels).float().mean()) for out in model(features))
    assert best == 1.0
