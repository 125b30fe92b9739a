"""Views per epoch, rank split and masks: deterministic, cycling, and split-invariant."""

from __future__ import annotations

import numpy as np
import pytest

from proteus.common.errors import ProteusError
from proteus.train.sampler import ViewSampler

IMAGES, K = 10, 3
IMAGE_VIEWS = np.arange(IMAGES * K).reshape(IMAGES, K)


def _sampler(batch=2, world=2, p=0.5, ratio=0.5, seed=0):
    return ViewSampler(IMAGE_VIEWS, seed, batch, world, p, ratio, num_patches=16)


def test_each_epoch_uses_every_image_once_and_k_epochs_cycle_views():
    s = _sampler(batch=5, world=1)
    assert s.steps_per_epoch == 2
    seen = {}
    for epoch in range(K):
        views = np.concatenate([s.global_views(epoch * 2 + i) for i in range(2)])
        images = views // K
        assert sorted(images) == list(range(IMAGES))
        for v in views:
            seen.setdefault(v // K, set()).add(v % K)
    assert all(len(views) == K for views in seen.values())


def test_ranks_together_form_the_one_process_batch():
    one = _sampler(batch=4, world=1)
    two = _sampler(batch=2, world=2)
    for step in range(5):
        p1 = one.plan(step, 0)
        r0, r1 = two.plan(step, 0), two.plan(step, 1)
        assert p1.n_masked == 2 and r0.n_masked == r1.n_masked == 1
        masked = np.concatenate([r0.view_ids[:1], r1.view_ids[:1]])
        unmasked = np.concatenate([r0.view_ids[1:], r1.view_ids[1:]])
        np.testing.assert_array_equal(p1.view_ids, np.concatenate([masked, unmasked]))
        np.testing.assert_array_equal(p1.masks, np.concatenate([r0.masks, r1.masks]))


def test_masks_have_the_ratio_and_depend_only_on_seed_and_step():
    s = _sampler(batch=4, world=1, ratio=0.25)
    plan = s.plan(3, 0)
    assert plan.masks.shape == (2, 16) and (plan.masks.sum(1) == 4).all()
    np.testing.assert_array_equal(
        plan.masks, _sampler(batch=4, world=1, ratio=0.25).plan(3, 0).masks
    )
    assert not np.array_equal(
        plan.masks, _sampler(batch=4, world=1, ratio=0.25, seed=1).plan(3, 0).masks
    )
    assert _sampler(batch=4, world=1, p=0).plan(0, 0).masks.shape == (0, 16)


def test_batch_larger_than_the_data_is_an_error():
    with pytest.raises(ProteusError, match="more than the cache's 10 usable images"):
        _sampler(batch=6, world=2)
