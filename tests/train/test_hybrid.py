"""The hybrid (--online-fraction p): a seeded share of every batch scored by the cache's
teacher on the views the cache would record next; the rest read from the cache."""

from __future__ import annotations

import json
import subprocess

import imagegen
import numpy as np
import pytest
import torch
from extract_helpers import cli_env, extract, run_cli, tiny_cache, torchrun_cli
from train_helpers import preempted_after, train, train_args

from proteus.common.cache.reader import Cache
from proteus.common.runs.logs import read_log
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.renderer import RenderConfig, Renderer
from proteus.train.sampler import ViewSampler
from proteus.train.sources import CacheSource, HybridSource, Samples
from proteus.train.sources.loop import LoopTeacher


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tiny_cache(tmp_path_factory.mktemp("hybrid"), classes=2, per_class=4, views=2)
    # The same images and seed with 6 views: views 2..5 are the ones the hybrid draws fresh.
    extract(root / "data", root / "six", root / "w.safetensors", views=6)
    return root


def _hybrid(world, out, p, **overrides):
    return train(
        world / "cache",
        out,
        teacher="tiny_dinov2",
        weights=world / "w.safetensors",
        online_fraction=p,
        **overrides,
    )


def _losses(run) -> list[float]:
    return [r["loss"] for r in read_log(run)]


def test_fresh_samples_are_the_views_a_larger_cache_records_next(world):
    two, six = Cache(world / "cache"), Cache(world / "six")
    teacher = LoopTeacher(
        "tiny_dinov2",
        weights=world / "w.safetensors",
        image_size=None,
        layers=(1,),
        device=torch.device("cpu"),
    )
    source = HybridSource(CacheSource(two), teacher)
    images = np.array([0, 3, 5, 6, 7, 1])
    uses = np.array([0, 1, 3, 2, 0, 1])
    fresh = np.array([True, True, False, True, True, False])
    cached_ids = np.array([0, 0, 2 * 5 + 1, 0, 0, 2 * 1 + 0])  # image 5 view 1, image 1 view 0
    samples = Samples(images, uses, cached_ids, fresh)
    views = source.views(samples)
    # Fresh: view 2 + u of the image, as the 6-view cache recorded it; cached: the record read.
    want = np.where(fresh, 2 + uses, [-1, -1, 1, -1, -1, 0])
    np.testing.assert_array_equal(views.view, want)
    np.testing.assert_array_equal(views.image, images)
    ids_six = images * 6 + want
    for column, value in views.columns().items():
        np.testing.assert_array_equal(value, six.views[ids_six].columns()[column], err_msg=column)
    # Their targets: the teacher's on the rendered pixels, or the cache's: what extraction
    # stored for those views.
    m = two.manifest
    renderer = Renderer(RenderConfig.for_policy(m.policy, m.image_size, m.mean, m.std))
    pixels = renderer.render([source.encoded(int(i)) for i in views.image], views)
    fetched = source.fetch(("cls", "patch"), samples)
    got = source.targets(fetched, pixels, torch.device("cpu"))
    for name in ("cls", "patch"):
        stored = torch.from_numpy(six.read(name, ids_six).astype(np.float32))
        torch.testing.assert_close(got[name], stored, rtol=1e-3, atol=2e-3)


def test_a_share_of_every_batch_is_fresh_and_the_split_is_rank_invariant():
    rows = np.arange(40).reshape(20, 2)
    one = ViewSampler(rows, 0, 8, 1, 0.5, 0.5, 16, fresh_fraction=0.25)
    two = ViewSampler(rows, 0, 4, 2, 0.5, 0.5, 16, fresh_fraction=0.25)
    for step in range(4):
        plan = one.plan(step, 0)
        assert plan.fresh is not None and plan.fresh.sum() == 2
        r0, r1 = two.plan(step, 0), two.plan(step, 1)
        assert r0.fresh is not None and r1.fresh is not None
        # Rank r holds positions r, r + 2, … of the masked and of the unmasked part.
        n = r0.n_masked
        masked = np.stack([r0.fresh[:n], r1.fresh[:n]], 1).reshape(-1)
        rest = np.stack([r0.fresh[n:], r1.fresh[n:]], 1).reshape(-1)
        np.testing.assert_array_equal(plan.fresh, np.concatenate([masked, rest]))


def test_p_zero_is_cached_training_and_p_one_scores_every_sample(world, tmp_path):
    train(world / "cache", tmp_path / "cached", max_steps=4)
    _hybrid(world, tmp_path / "zero", 0.0, max_steps=4)
    assert _losses(tmp_path / "zero") == _losses(tmp_path / "cached")
    _hybrid(world, tmp_path / "quarter", 0.25, max_steps=4)
    _hybrid(world, tmp_path / "one", 1.0, max_steps=4)
    quarter, one = _losses(tmp_path / "quarter"), _losses(tmp_path / "one")
    assert quarter != _losses(tmp_path / "cached") and one != quarter
    assert all(np.isfinite(quarter + one))
    config = json.loads((tmp_path / "quarter" / "config.json").read_text())
    assert config["config"]["online_fraction"] == 0.25


def test_a_hybrid_run_resumes_to_the_uninterrupted_losses(world, tmp_path):
    _hybrid(world, tmp_path / "full", 0.5, max_steps=6)
    with preempted_after(3), pytest.raises(ProteusError, match="stopped by signal"):
        _hybrid(world, tmp_path / "cut", 0.5, max_steps=6)
    with pytest.raises(ProteusError, match="online_fraction"):
        _hybrid(world, tmp_path / "cut", 0.25, max_steps=6, resume=True)
    _hybrid(world, tmp_path / "cut", 0.5, max_steps=6, resume=True)
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "full")


def test_another_teacher_is_refused_and_nothing_is_written(world, tmp_path):
    other = imagegen.save_teacher_weights("tiny_dinov2", tmp_path / "other.safetensors", seed=7)
    with pytest.raises(ProteusError, match="not the teacher of --cache") as refused:
        train(
            world / "cache",
            tmp_path / "r",
            teacher="tiny_dinov2",
            weights=other,
            online_fraction=0.25,
        )
    assert "weights sha256" in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--cache", "c", "--online-fraction", "0.25"), "fresh views need the teacher"),
        (
            ("--teacher", "tiny_dinov2", "--data", "d", "--online-fraction", "0.25"),
            "pass --cache",
        ),
        (
            ("--cache", "a", "--cache", "b", "--teacher", "t", "--online-fraction", "0.1"),
            "takes one --cache",
        ),
        (("--cache", "c", "--teacher", "t", "--online-fraction", "1.5"), "--online-fraction"),
    ],
)
def test_hybrid_refusals_are_one_line(tmp_path, args, message):
    result = run_cli(*train_args(None, tmp_path / "r", *args))
    assert result.returncode in (1, 2) and message in result.stderr, result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_hybrid_two_processes_follow_one(world, tmp_path):
    extra = ("--teacher", "tiny_dinov2", "--weights", str(world / "w.safetensors"))
    extra += ("--online-fraction", "0.5", "--max-steps", "4")
    result = run_cli(*train_args(world / "cache", tmp_path / "one", *extra))
    assert result.returncode == 0, result.stderr[-2000:]
    two = torchrun_cli(
        2, *train_args(world / "cache", tmp_path / "two", *extra, "--batch-size", "2")
    )
    result = subprocess.run(two, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(_losses(tmp_path / "two"), _losses(tmp_path / "one"), rtol=1e-4)
