"""View records: a pure function of (seed, image, view, size), inside the policy's ranges."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from proteus.common.runtime.errors import ProteusError
from proteus.common.views.randaugment import OPS, level_to_param
from proteus.common.views.records import (
    LEGACY_POLICY,
    NO_AUGMENTATION,
    PRESETS,
    AugPolicy,
    ViewTable,
    parse_policy,
    sample_views,
    small_image_advice,
)

SIZES = np.array([[375, 500], [224, 224], [40, 1000], [1000, 40], [17, 23]] * 40)
IMAGES = np.arange(len(SIZES))


DEFAULT = AugPolicy()


def _table(policy=DEFAULT, seed=0, images=IMAGES, sizes=SIZES, views=3) -> ViewTable:
    return sample_views(policy, seed, images, sizes, views, out_size=56)


def _equal(a: ViewTable, b: ViewTable) -> bool:
    return all(np.array_equal(a.columns()[k], b.columns()[k]) for k in ViewTable.FIELDS)


def test_records_do_not_depend_on_order_or_subset():
    full = _table()
    picked = np.array([7, 3, 150])
    sub = _table(images=picked, sizes=SIZES[picked])
    rows = np.concatenate([np.flatnonzero(full.image == i) for i in picked])
    assert _equal(sub, full[rows])
    assert _equal(_table(), full)  # and twice in a row


def test_seed_changes_records():
    assert not np.array_equal(_table(seed=1).crop, _table().crop)


def test_crops_lie_inside_the_image_and_the_policy():
    policy = AugPolicy()
    table = _table(policy)
    y, x, h, w = table.crop.T
    H, W = SIZES[table.image].T
    assert (y >= 0).all() and (x >= 0).all() and (y + h <= H).all() and (x + w <= W).all()
    assert (h > 0).all() and (w > 0).all()
    # Images of ordinary shape never need torchvision's centred fallback, so their crops obey
    # the policy's ranges (up to rounding to whole pixels).
    normal = np.isin(H, [375, 224])
    share, ratio = (h * w / (H * W))[normal], (w / h)[normal]
    assert share.max() <= 1.0 and share.min() >= policy.crop_scale[0] * 0.95
    assert ratio.min() > 0.74 and ratio.max() < 1.35
    # Very elongated images fall back to the largest centred box within the ratio range.
    thin = table.crop[SIZES[table.image][:, 0] == 40]
    assert (thin == [0, 473, 40, 53]).all()


def test_erase_boxes_lie_inside_the_output():
    table = _table(dataclasses.replace(AugPolicy(), erase_prob=1.0))
    y, x, h, w = table.erase.T
    assert (h > 0).all() and (y + h <= 56).all() and (x + w <= 56).all()


def test_rates_follow_the_policy():
    table = _table(LEGACY_POLICY, views=5)
    n = len(table)
    assert abs(table.flip.mean() - 0.5) < 0.06
    assert abs(table.grayscale.mean() - 0.2) < 0.05
    assert abs((table.erase[:, 2] > 0).mean() - 0.25) < 0.05
    jittered = (table.color != [1, 1, 1, 0]).any(1)
    assert abs(jittered.mean() - 0.8) < 0.06 and n == 1000
    assert (np.abs(table.color[jittered, :3] - 1) <= 0.3 + 1e-6).all()


@pytest.mark.parametrize(
    "field, check",
    [
        ("flip_prob", lambda t: not t.flip.any()),
        ("jitter_prob", lambda t: (t.color == [1, 1, 1, 0]).all()),
        ("grayscale_prob", lambda t: not t.grayscale.any()),
        ("erase_prob", lambda t: not t.erase.any()),
    ],
)
def test_each_augmentation_turns_off(field, check):
    assert check(_table(dataclasses.replace(AugPolicy(), **{field: 0.0})))


def test_no_augmentation_is_a_centred_square():
    table = sample_views(NO_AUGMENTATION, 0, np.arange(2), np.array([[30, 40], [50, 20]]), 2, 28)
    assert table.crop.tolist() == [[0, 5, 30, 30]] * 2 + [[15, 0, 20, 20]] * 2
    assert not table.flip.any() and not table.erase.any() and not table.grayscale.any()


def test_randaugment_records_follow_rand_m9_mstd05_inc1():
    table = _table(views=5)
    assert table.ra_op.shape == (1000, 2) and table.ra_param.dtype == np.float32
    applied = table.ra_op >= 0
    assert abs(applied.mean() - 0.5) < 0.04  # each layer's op runs with probability 0.5
    assert set(np.unique(table.ra_op[applied])) == set(range(len(OPS)))  # all 15 ops drawn
    for op, param in zip(table.ra_op[applied], table.ra_param[applied], strict=True):
        name = OPS[op]
        if name == "Rotate":  # 30° × N(9, 0.5)/10, clipped to [0, 10], either sign
            assert 20 <= abs(param) <= 30
        elif name.endswith("Increasing") and "ize" not in name:
            assert 0.1 <= param <= 1.9 and abs(param - 1) >= 0.6
    # Pixel-mode erasing: every erased view has its own noise seed, the others none.
    erased = table.erase[:, 2] > 0
    assert (table.erase_seed[erased] > 0).all() and not table.erase_seed[~erased].any()
    assert len(np.unique(table.erase_seed[erased])) == erased.sum()


@pytest.mark.parametrize("name", OPS)
def test_randaugment_parameters_are_timms(name, monkeypatch):
    import random

    from timm.data import auto_augment as timm_aa

    for negate in (False, True):
        # timm negates when random.random() > 0.5.
        monkeypatch.setattr(random, "random", lambda negate=negate: 0.9 if negate else 0.1)
        for level in (0.0, 3.3, 8.7, 9.0, 10.0):
            want = timm_aa.LEVEL_TO_ARG[name]
            expected = want(level, {"translate_pct": 0.45}) if want else ()
            ours = level_to_param(name, level, negate)
            assert (ours,) == pytest.approx(expected) if expected else ours == 0.0


def test_records_of_old_caches_are_unchanged():
    # A policy recorded before RandAugment existed replays as it was rendered then: no
    # RandAugment draws, constant erasing, linear resampling.
    old = {
        k: v
        for k, v in LEGACY_POLICY.to_dict().items()
        if k not in ("interpolation", "randaug_layers", "erase_mode")
    }
    policy = AugPolicy.from_dict(old)
    assert policy == LEGACY_POLICY
    table = _table(policy)
    assert (table.ra_op == -1).all() and not table.erase_seed.any()


def test_parse_policy_takes_named_choices():
    policy = parse_policy(["erase_mode=const", "interpolation=linear", "randaug_layers=0"])
    assert (policy.erase_mode, policy.interpolation, policy.randaug_layers) == (
        "const",
        "linear",
        0,
    )
    with pytest.raises(Exception, match=r"erase_mode is one of pixel\|const"):
        parse_policy(["erase_mode=noise"])


def test_policy_round_trips_through_a_dict():
    policy = AugPolicy(crop_scale=(0.3, 1.0), hue=0.1)
    assert AugPolicy.from_dict(policy.to_dict()) == policy


def test_presets_and_what_aug_changes_on_them():
    small = parse_policy((), preset="small")
    assert small == PRESETS["small"] and small.randaug_layers == 0 and small.erase_prob == 0
    assert small.crop_scale == (0.35, 1.0) and small.flip_prob == 0.5
    glyphs = parse_policy(("flip_prob=0.25",), preset="glyphs")
    assert glyphs.flip_prob == 0.25 and glyphs.crop_scale == (0.3, 1.0)  # --aug wins
    assert parse_policy(()) == AugPolicy() == PRESETS["reference"]
    with pytest.raises(ProteusError, match="--aug-preset 'tiny': one of reference, small, glyphs"):
        parse_policy((), preset="tiny")
    with pytest.raises(ProteusError, match="--no-aug and --aug-preset small each choose"):
        parse_policy((), no_aug=True, preset="small")


def test_small_images_get_one_line_of_advice_only_with_the_reference_views():
    sides = np.array([24, 28, 28, 32])
    advice = small_image_advice(sides, 64, AugPolicy())
    assert advice is not None and "--aug-preset small" in advice and "\n" not in advice
    assert "median short side is 28 px" in advice and "8% crops 8×" in advice
    assert small_image_advice(sides, 64, PRESETS["small"]) is None  # chosen already
    assert small_image_advice(np.array([200, 400]), 224, AugPolicy()) is None  # ImageNet-like
