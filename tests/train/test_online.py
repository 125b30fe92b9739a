"""Online training: the teacher in the loop on fresh views, through the same policy,
renderer, objective, checkpoints, resume and DDP as cached training."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from extract_helpers import cli_env, extract, run_cli, tiny_cache, torchrun_cli
from train_helpers import preempted_after, train, train_args

from proteus.common.cache.reader import Cache
from proteus.common.runs.checkpoint import load_checkpoint
from proteus.common.runs.logs import read_log
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.records import AugPolicy, parse_policy
from proteus.common.views.renderer import RenderConfig, Renderer
from proteus.train.sources import OnlineTeacher, Samples


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_cache(tmp_path_factory.mktemp("online"), classes=3, views=4)


def _online(world, out, **overrides):
    return train(
        None,
        out,
        teacher="tiny_dinov2",
        weights=world / "w.safetensors",
        data=world / "data",
        **overrides,
    )


def _losses(run) -> list[float]:
    return [r["loss"] for r in read_log(run)]


def test_online_training_lowers_the_loss_and_records_its_teacher(world, tmp_path):
    result = _online(world, tmp_path / "run", max_steps=30)
    losses = _losses(tmp_path / "run")
    assert result.steps == 30 and np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["cache"]["path"] == "online:tiny_dinov2"
    assert config["teacher"]["name"] == "tiny_dinov2" and config["config"]["teacher"]
    from proteus.evaluate.viz import plot_pca

    with pytest.raises(ProteusError, match="trained online"):
        plot_pca(tmp_path / "run", tmp_path / "pca.png")
    assert plot_pca(tmp_path / "run", tmp_path / "pca.png", world / "cache").is_file()
    state = load_checkpoint(tmp_path / "run")
    assert (
        state["teachers"][0]["cache"]["weights_sha256"]
        == Cache(world / "cache").manifest.weights_sha256
    )


def test_online_views_are_the_cache_views_with_more_indices(world):
    # The u-th use of an image renders the record a cache stores as view u, so a cached run
    # with K views and an online run see the same pixels and targets for u < K.
    cache = Cache(world / "cache")
    online = OnlineTeacher(
        "tiny_dinov2",
        world / "data",
        weights=world / "w.safetensors",
        image_size=None,
        layers=(1,),
        policy=AugPolicy(),
        seed=0,
        device=torch.device("cpu"),
        progress=False,
    )
    assert online.info.targets == {k: tuple(v) for k, v in cache.manifest.targets.items()}
    ids = np.array([0, 5, 6, 11])
    cached = cache.views[ids]
    fresh = online.views(Samples(cached.image, cached.view.astype(np.int64)))
    for name in cached.FIELDS:
        np.testing.assert_array_equal(getattr(fresh, name), getattr(cached, name), err_msg=name)
    m = cache.manifest
    renderer = Renderer(RenderConfig.for_policy(m.policy, m.image_size, m.mean, m.std))
    pixels = renderer.render([cache.encoded(i) for i in cached.image], fresh)
    targets = online.loop.forward(pixels)
    stored = torch.from_numpy(cache.read("patch", ids).astype(np.float32))
    torch.testing.assert_close(targets["patch"], stored, rtol=1e-3, atol=2e-3)


def test_online_resume_repeats_the_uninterrupted_run(world, tmp_path):
    _online(world, tmp_path / "full", max_steps=8)
    with preempted_after(4), pytest.raises(ProteusError, match="stopped by signal"):
        _online(world, tmp_path / "cut", max_steps=8)
    assert load_checkpoint(tmp_path / "cut")["step"] == 4
    _online(world, tmp_path / "cut", max_steps=8, resume=True)
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "full")  # exactly


def test_online_two_processes_follow_one(world, tmp_path):
    extra = (
        "--teacher",
        "tiny_dinov2",
        "--weights",
        str(world / "w.safetensors"),
        "--data",
        str(world / "data"),
        "--max-steps",
        "4",
    )
    one = train_args(None, tmp_path / "one", *extra)
    result = run_cli(*one)
    assert result.returncode == 0, result.stderr[-2000:]
    two = torchrun_cli(2, *train_args(None, tmp_path / "two", *extra, "--batch-size", "2"))
    result = subprocess.run(two, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(_losses(tmp_path / "two"), _losses(tmp_path / "one"), rtol=1e-4)


@pytest.mark.parametrize(
    "args, message",
    [
        (("--teacher", "tiny_dinov2", "--cache", "c"), "pass one of them"),
        (("--teacher", "tiny_dinov2"), "online training needs --data DIR"),
        ((), "no targets: pass --cache CACHE"),
        (("--cache", "c", "--recipe", "deit"), "--recipe 'deit': unknown; choose one of proteus"),
        (("--teacher", "tiny_dinov2", "--data", "d", "--views", "2"), "drop --views"),
        (("--cache", "c", "--aug-preset", "small"), "a cache replays the views it recorded"),
        (("--cache", "c", "--aug", "flip_prob=0"), "a cache replays the views it recorded"),
    ],
)
def test_source_refusals_are_one_line(tmp_path, args, message):
    result = run_cli("train", "--student", "tiny_vit14", "--out", str(tmp_path / "r"), *args)
    assert result.returncode == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_online_refuses_a_data_folder_without_images(world, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProteusError, match="--data"):
        train(
            None,
            tmp_path / "r",
            teacher="tiny_dinov2",
            weights=world / "w.safetensors",
            data=tmp_path / "empty",
        )


def test_online_views_follow_the_view_options_as_extraction_does(world, tmp_path):
    """`train --teacher … --aug-preset glyphs --aug crop_scale=0.5,1` draws the views a cache
    extracted with the same options would store."""
    policy = parse_policy(("crop_scale=0.5,1",), preset="glyphs")
    _online(world, tmp_path / "run", max_steps=2, aug_preset="glyphs", policy=policy)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["aug_preset"] == "glyphs"
    assert config["config"]["policy"]["crop_scale"] == [0.5, 1.0]
    assert config["config"]["policy"]["flip_prob"] == 0.0
    online = OnlineTeacher(
        "tiny_dinov2",
        world / "data",
        weights=world / "w.safetensors",
        image_size=None,
        layers=(),
        policy=policy,
        seed=0,
        device=torch.device("cpu"),
        progress=False,
    )
    images = online.rows(None).images
    fresh = online.views(Samples(images, np.zeros(len(images), np.int64)))
    extract(
        world / "data",
        tmp_path / "cache",
        world / "w.safetensors",
        views=1,
        layers=(),
        aug_preset="glyphs",
        policy=policy,
    )
    cache = Cache(tmp_path / "cache")
    assert cache.manifest.aug_preset == "glyphs"
    np.testing.assert_array_equal(fresh.crop, cache.views.crop[images])
