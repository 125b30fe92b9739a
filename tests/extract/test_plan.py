"""extract --epochs without --views: K by the replay rule, and the codec the byte budget
needs; explicit options and an existing cache's codec are never replaced."""

from __future__ import annotations

import imagegen
import pytest
from extract_helpers import extract

from proteus.common.cache.reader import Cache
from proteus.common.models.teachers import build_teacher
from proteus.common.views.replays import MAX_REPLAYS, views_needed
from proteus.extract.config import ExtractConfig
from proteus.extract.plan import plan_storage, view_bytes
from proteus.extract.runner import _target_shapes

# Per-view target shapes: DINOv2-g at 224 px (257 tokens of 1536) and a small teacher.
GIANT = {"cls": [1536], "patch": [256, 1536]}
SMALL = {"cls": [320], "patch": [4, 320]}


def _cfg(**kw) -> ExtractConfig:
    return ExtractConfig(teacher="t", data="d", out="o", **({"views": None} | kw))


def test_a_small_teacher_gets_the_rules_views_in_float16():
    plan = plan_storage(_cfg(epochs=300), SMALL, None)
    assert plan.views == views_needed(300) == 38
    assert (plan.dtype, plan.pca) == ("float16", None)
    assert "recording --views 38" in plan.note and f"within {MAX_REPLAYS} replays" in plan.note


def test_a_giant_teacher_gets_the_first_codec_that_fits_the_budget():
    plan = plan_storage(_cfg(epochs=300), GIANT, None)
    budget = 8e6
    assert 38 * view_bytes(GIANT, "float16", None) > budget  # float16 would not fit
    assert 38 * view_bytes(GIANT, "int8", None) > budget  # nor int8
    assert (plan.views, plan.dtype, plan.pca) == (38, "float16", 256)
    assert plan.views * view_bytes(GIANT, plan.dtype, plan.pca) <= budget
    assert "--pca 256" in plan.note and "--budget-mb 8" in plan.note
    # More room: int8 alone fits.
    roomy = plan_storage(_cfg(epochs=300, budget_mb=16), GIANT, None)
    assert (roomy.dtype, roomy.pca) == ("int8", None)


def test_a_budget_too_small_for_the_rule_caps_the_views_and_names_the_hybrid_share():
    plan = plan_storage(_cfg(epochs=300, budget_mb=1), GIANT, None)
    per_view = view_bytes(GIANT, "float16", 64)
    assert plan.pca == 64 and plan.views == int(1e6 // per_view) < 38
    assert "--online-fraction" in plan.note and "raise --budget-mb" in plan.note


def test_given_options_are_kept():
    assert plan_storage(_cfg(views=4), GIANT, None).views == 4
    given = plan_storage(_cfg(views=4, dtype="int8"), GIANT, None)
    assert (given.views, given.dtype, given.pca, given.note) == (4, "int8", None, None)
    codec = plan_storage(_cfg(epochs=300, dtype="float32"), GIANT, None)
    assert (codec.views, codec.dtype, codec.pca) == (38, "float32", None)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    data = imagegen.image_folder(root / "data", classes=2, per_class=3)
    return data, imagegen.save_teacher_weights("tiny_dinov2", root / "w.safetensors")


def test_extract_plans_the_views_and_codec_and_keeps_the_codec_when_it_grows(
    images, tmp_path, capfd
):
    data, weights = images
    out = tmp_path / "c"
    # 16 epochs need 2 views; a budget between two int8 and two float16 views needs int8.
    teacher = build_teacher("tiny_dinov2", layers=(1,), weights=weights)
    shapes = _target_shapes(teacher)
    budget = view_bytes(shapes, "int8", None) + view_bytes(shapes, "float16", None)
    extract(data, out, weights, views=None, epochs=16, budget_mb=budget / 1e6)
    m = Cache(out).manifest
    assert m.views_per_image == 2
    said = capfd.readouterr().err
    assert "--epochs 16: 2 views per image keep every view within" in said
    planned = (m.dtype, m.encoding["patch"].pca_k)
    assert planned == ("int8", None) and "--dtype int8" in said
    # Growing with an explicit --views and no codec option keeps the cache's codec.
    extract(data, out, weights, views=4)
    grown = Cache(out).manifest
    assert grown.views_per_image == 4 and grown.state == "sealed"
    assert (grown.dtype, grown.encoding["patch"].pca_k) == planned
