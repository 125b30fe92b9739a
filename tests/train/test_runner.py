"""Training from a real tiny cache: loss goes down, same pixels, logs, refusals, DDP, resume."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from extract_helpers import (
    cli_env,
    edit_manifest,
    reseal,
    run_cli,
    tiny_cache,
    torchrun_cli,
    writable_copy,
)
from train_helpers import preempted_after, train, train_args

from proteus.common.cache.reader import Cache
from proteus.common.models.teachers import build_teacher
from proteus.common.runs.checkpoint import load_checkpoint
from proteus.common.runs.logs import read_log
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.renderer import RenderConfig, Renderer
from proteus.common.views.replays import MAX_REPLAYS
from proteus.train.loader import Batches
from proteus.train.sampler import ViewSampler
from proteus.train.sources import CacheSource


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_cache(tmp_path_factory.mktemp("train"), classes=3)


def _losses(run) -> list[float]:
    return [r["loss"] for r in read_log(run)]


def test_thirty_steps_lower_the_loss_and_write_the_run_folder(world, tmp_path):
    result = train(world / "cache", tmp_path / "run", max_steps=30, tensorboard=True)
    losses = _losses(tmp_path / "run")
    assert len(losses) == 30 and result.steps == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    record = read_log(tmp_path / "run")[0]
    assert {
        "step",
        "loss",
        "loss_token",
        "loss_fea",
        "loss_patch",
        "lr",
        "images_per_s",
    } <= record.keys()
    assert record["loss"] == pytest.approx(
        record["loss_token"] + record["loss_fea"] + record["loss_patch"], rel=1e-5
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["lr"] == 2e-3 and config["lambdas"] == {
        "token": 1.0,
        "fea": 1.0,
        "patch": 1.0,
        "hint": 1.0,
    }
    assert config["steps_per_epoch"] == 3 and config["total_steps"] == 30
    assert (
        config["cache"]["teacher"] == "tiny_dinov2" and config["resolved"]["weight_decay"] == 0.05
    )
    assert config["recipe"]["name"] == "proteus" and config["config"]["weight_decay"] is None
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    state = load_checkpoint(tmp_path / "run")
    assert state["step"] == 30 and state["ema"] is not None


def test_the_trainer_renders_the_pixels_the_teacher_saw(world):
    # Take the trainer's own loader for a step, run the teacher on its images: the targets
    # the trainer read come back (fp16 storage tolerance).
    cache = Cache(world / "cache")
    m = cache.manifest
    sampler = ViewSampler(cache.usable_views().reshape(-1, 2), 0, 4, 1, 0.5, 0.5, 4)
    renderer = Renderer(RenderConfig.for_policy(m.policy, m.image_size, m.mean, m.std, max_batch=4))
    source = CacheSource(cache)
    loader = Batches([source], source.rows(None), sampler, renderer, [("cls", "patch")], rank=0)
    teacher = build_teacher(m.teacher, weights=world / "w.safetensors")
    for step in (0, 5):
        batch = loader.batch(step)
        out = teacher(batch.images)
        (read,) = loader.targets(batch, torch.device("cpu"))
        for name in ("cls", "patch"):
            torch.testing.assert_close(read[name], out[name], rtol=1e-3, atol=2e-3)


def test_token_only_run_never_reads_patch_targets(world, tmp_path):
    cache = writable_copy(world / "cache", tmp_path / "cache")
    shutil.rmtree(cache / "targets" / "patch")  # reading it would fail
    train(cache, tmp_path / "run", lambda_token=1.0, lambda_fea=0.0, lambda_patch=0.0)
    assert all("loss_fea" not in r and "loss_patch" not in r for r in read_log(tmp_path / "run"))


def test_student_on_another_grid_gets_resized_targets(world, tmp_path):
    train(world / "cache", tmp_path / "run", student="tiny_vit7", max_steps=3)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["student_grid"] == [4, 4] and config["teacher"]["grid"] == [2, 2]
    assert all(np.isfinite(_losses(tmp_path / "run")))


def test_resume_continues_with_identical_losses(world, tmp_path):
    train(world / "cache", tmp_path / "full", max_steps=10)
    # A run cut after step 6 (what a kill leaves: its last checkpoint) ...
    cut = tmp_path / "cut"
    with pytest.raises(ProteusError, match="stopped by signal"):
        _train_then_signal(world, cut, after_steps=6)
    assert load_checkpoint(cut)["step"] == 6
    train(world / "cache", cut, max_steps=10, resume=True)
    assert _losses(cut) == _losses(tmp_path / "full")  # exactly, step by step
    assert [r["step"] for r in read_log(cut)] == list(range(10))


def _train_then_signal(world, out, after_steps: int):
    with preempted_after(after_steps):
        train(world / "cache", out, max_steps=10)


def test_two_processes_follow_one(world, tmp_path):
    one = run_cli(*train_args(world / "cache", tmp_path / "one", "--max-steps", "6"))
    assert one.returncode == 0, one.stderr
    # stderr is a pipe here, as in a SLURM log: plain progress lines, no bar redraws.
    assert "\r" not in one.stderr and "train: 6/6 step (100%)" in one.stderr
    args = train_args(world / "cache", tmp_path / "two", "--max-steps", "6", "--batch-size", "2")
    torchrun = torchrun_cli(2, *args)
    two = subprocess.run(torchrun, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["world"] == 2 and config["global_batch"] == 4
    np.testing.assert_allclose(_losses(tmp_path / "two"), _losses(tmp_path / "one"), rtol=1e-4)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(world, tmp_path):
    cfg = dict(max_steps=40, lr=1e30, checkpoint_every=1, ema_decay=0.0)
    with pytest.raises(
        ProteusError, match=r"step \d+: the loss is (nan|inf).*last good checkpoint"
    ):
        train(world / "cache", tmp_path / "run", **cfg)
    state = load_checkpoint(tmp_path / "run")
    bad_step = len(read_log(tmp_path / "run"))  # the failing step was never logged
    assert state["step"] == bad_step
    assert all(torch.isfinite(v).all() for v in state["student"].values() if v.is_floating_point())


def test_refusals(world, tmp_path):
    cache = world / "cache"
    with pytest.raises(ProteusError, match="no such folder"):
        train(tmp_path / "nope", tmp_path / "r0")
    with pytest.raises(ProteusError, match="not a multiple of its patch size 16"):
        train(cache, tmp_path / "r1", student="vit_s16")
    with pytest.raises(ProteusError, match="no checkpoint in"):
        train(cache, tmp_path / "r2", resume=True)
    train(cache, tmp_path / "r3", max_steps=2)
    with pytest.raises(ProteusError, match="already holds a run"):
        train(cache, tmp_path / "r3", max_steps=2)
    with pytest.raises(ProteusError, match="student_name='tiny_vit14', this run asks 'tiny_vit7'"):
        train(cache, tmp_path / "r3", student="tiny_vit7", resume=True)
    with pytest.raises(ProteusError, match="masks nothing"):
        train(cache, tmp_path / "r4", mask_probability=0.1)


def test_unsealed_and_newer_caches_are_refused(world, tmp_path):
    cache = writable_copy(world / "cache", tmp_path / "cache")
    edit_manifest(cache, format_version=99)
    with pytest.raises(ProteusError, match=r"format version 99.*upgrade proteus"):
        train(cache, tmp_path / "r1")
    edit_manifest(cache, format_version=1, state="writing")
    with pytest.raises(ProteusError, match="not sealed"):
        train(cache, tmp_path / "r2")


def test_cli_errors_are_one_line(world, tmp_path):
    run = run_cli(*train_args(world / "cache", tmp_path / "r", student="vit_s16"))
    assert run.returncode == 1
    assert run.stderr.strip().startswith("Error: ") and "Traceback" not in run.stderr


def test_losses_needing_targets_the_cache_lacks_are_refused(world, tmp_path):
    cache = writable_copy(world / "cache", tmp_path / "cache")
    targets = edit_manifest(cache)["targets"]
    edit_manifest(cache, targets={k: v for k, v in targets.items() if k != "patch"})  # cls only
    reseal(cache)
    with pytest.raises(ProteusError, match="need patch targets, which this cache lacks"):
        train(cache, tmp_path / "r")
    train(cache, tmp_path / "r", lambda_fea=0.0, lambda_patch=0.0, max_steps=2)


def test_repeats_above_the_recorded_views_are_lowered_and_said(world, tmp_path, capfd):
    # The world cache has K = 2 views per image; the recipe asks 3 copies per image.
    train(world / "cache", tmp_path / "run", max_steps=2)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["resolved"]["repeated_aug"] == 3 and config["repeated_aug"] == 2
    (said,) = config["adjustments"]
    assert "--repeated-aug 3" in said and "each image is taken 2 times" in said
    assert f"proteus: {said}" in capfd.readouterr().err
    train(world / "cache", tmp_path / "one", max_steps=2, repeated_aug=1)
    config = json.loads((tmp_path / "one" / "config.json").read_text())
    assert config["repeated_aug"] == 1 and config["adjustments"] == []


def test_epochs_that_replay_each_view_past_the_rule_are_warned_with_both_fixes(
    world, tmp_path, capfd
):
    # K = 2 views: 2 × MAX_REPLAYS epochs are within the rule, one more epoch is not.
    per_epoch = Cache(world / "cache").manifest.counts["usable_images"] // 4
    within = 2 * MAX_REPLAYS * per_epoch
    train(world / "cache", tmp_path / "ok", max_steps=within, repeated_aug=1)
    config = json.loads((tmp_path / "ok" / "config.json").read_text())
    assert config["adjustments"] == []
    train(world / "cache", tmp_path / "past", max_steps=within + per_epoch, repeated_aug=1)
    (said,) = json.loads((tmp_path / "past" / "config.json").read_text())["adjustments"]
    assert (
        f"{2 * MAX_REPLAYS + 1} epochs replay each of the cache's 2 views about 8.5 times" in said
    )
    assert "proteus extract --views 3" in said and "--online-fraction 0.1" in said
    assert f"proteus: {said}" in capfd.readouterr().err


def test_a_warm_up_longer_than_the_run_is_cut_to_a_quarter_or_flagged(world, tmp_path, capfd):
    # A 4-epoch run: the recipe's 5 warm-up epochs would be all of it.
    # Batch 4 and 2 copies of each image: an epoch takes images / 2 twice, 4 at a time.
    per_epoch = Cache(world / "cache").manifest.counts["usable_images"] // 4
    train(world / "cache", tmp_path / "run", max_steps=4 * per_epoch, warmup_epochs=None)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["steps_per_epoch"] == per_epoch
    assert config["warmup_steps"] == per_epoch  # a quarter of 4 epochs
    cut = [a for a in config["adjustments"] if "warm-up" in a]
    assert len(cut) == 1 and "warming up for 1 epochs, a quarter of the run" in cut[0]
    assert "--warmup-epochs sets it" in capfd.readouterr().err
    train(world / "cache", tmp_path / "given", max_steps=4 * per_epoch, warmup_epochs=5)
    config = json.loads((tmp_path / "given" / "config.json").read_text())
    assert config["warmup_steps"] == 5 * per_epoch  # as given, and said
    assert any("--warmup-epochs 5 is 125%" in a for a in config["adjustments"])


def test_a_run_of_two_epochs_at_most_is_told_its_lr_never_leaves_the_warm_up_start(
    world, tmp_path, capfd
):
    per_epoch = Cache(world / "cache").manifest.counts["usable_images"] // 4
    train(world / "cache", tmp_path / "run", max_steps=2 * per_epoch, warmup_epochs=None)
    err = capfd.readouterr().err
    assert "all of it trains at the warm-up start lr 1e-06" in err and "--recipe legacy" in err
    assert {r["lr"] for r in read_log(tmp_path / "run")} == {1e-6}
    train(world / "cache", tmp_path / "three", max_steps=3 * per_epoch, warmup_epochs=None)
    assert "warm-up start" not in capfd.readouterr().err
