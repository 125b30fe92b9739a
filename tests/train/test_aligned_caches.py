"""Several teachers on the same pixels: `extract --views-from`, then `train --cache A --cache B`."""

from __future__ import annotations

import subprocess

import imagegen
import numpy as np
import pytest
from extract_helpers import (
    cli_args,
    cli_env,
    edit_manifest,
    extract,
    reseal,
    run_cli,
    torchrun_cli,
    writable_copy,
)
from train_helpers import train, train_args

from proteus.common.cache.reader import Cache
from proteus.common.runs.checkpoint import load_checkpoint
from proteus.common.runs.logs import read_log
from proteus.common.runtime.errors import ProteusError
from proteus.evaluate.agreement import run_agreement
from proteus.evaluate.models import load_trained_student


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("aligned")
    data = imagegen.image_folder(root / "data", classes=2, per_class=3)
    dino = imagegen.save_teacher_weights("tiny_dinov2", root / "dino.safetensors")
    clip = imagegen.save_teacher_weights("tiny_clip", root / "clip.safetensors")
    extract(data, root / "a", dino, views=2, seed=5)
    extract(data, root / "b", clip, teacher="tiny_clip", views_from=root / "a", layers=())
    return root


def test_views_from_reuses_the_images_and_view_records_exactly(world):
    a, b = Cache(world / "a"), Cache(world / "b")
    for name, column in a.views.columns().items():
        assert np.array_equal(column, b.views.columns()[name]), name
    assert list(a.images.path) == list(b.images.path)
    mb = b.manifest
    assert (mb.seed, mb.views_per_image, mb.policy) == (5, 2, a.manifest.policy)
    assert mb.views_from["views_sha256"] == a.views_digest() == b.views_digest()
    assert mb.views_from["manifest_sha256"] == a.manifest.digest()
    assert mb.teacher == "tiny_clip" and mb.mean != a.manifest.mean


def test_views_from_refuses_other_data_and_sizes(world, tmp_path):
    other = imagegen.image_folder(tmp_path / "other", classes=2, per_class=2)
    with pytest.raises(ProteusError, match="not the images --views-from"):
        extract(other, tmp_path / "c", world / "dino.safetensors", views_from=world / "a")
    with pytest.raises(ProteusError, match=r"--image-size 56.*same size"):
        extract(
            world / "data",
            tmp_path / "d",
            world / "dino.safetensors",
            image_size=56,
            views_from=world / "a",
        )
    with pytest.raises(ProteusError, match=r"--views-from .*no such folder"):
        extract(
            world / "data", tmp_path / "e", world / "dino.safetensors", views_from=tmp_path / "none"
        )
    args = cli_args(world / "data", tmp_path / "f", world / "dino.safetensors")
    result = run_cli(*args, "--views-from", str(world / "a"), "--seed", "3")
    assert result.returncode == 2 and "drop --views, --seed" in result.stderr


def test_two_aligned_caches_train_together(world, tmp_path):
    run = tmp_path / "run"
    train((world / "a", world / "b"), run, max_steps=4, lambda_token=(1.0, 0.5))
    record = read_log(run)[-1]
    assert record["loss_token.t1"] > 0 and record["loss_token.t2"] > 0
    assert "loss_fea.t2" not in record  # CLIP default: token only
    parts1 = record["loss_token.t1"] + record["loss_fea.t1"] + record["loss_patch.t1"]
    assert record["loss"] == pytest.approx(parts1 + 0.5 * record["loss_token.t2"], rel=1e-5)
    state = load_checkpoint(run)
    assert [t["name"] for t in state["teachers"]] == ["tiny_dinov2", "tiny_clip"]
    assert [t["lambdas"]["token"] for t in state["teachers"]] == [1.0, 0.5]
    trained = load_trained_student(run)
    assert trained.heads[1].fea_head is None and trained.heads[0].fea_head is not None
    # Agreement picks the head set of the teacher whose cache it is given.
    scores = run_agreement(run, world / "b", device="cpu", progress=False, max_views=4)
    assert set(scores) == {"token_cosine", "token_mse", "views", "teacher"}


def test_misaligned_caches_are_refused(world, tmp_path):
    extract(
        world / "data",
        tmp_path / "c",
        world / "clip.safetensors",
        teacher="tiny_clip",
        views=2,
        seed=6,
        layers=(),
    )
    with pytest.raises(ProteusError, match=r"not aligned \(seed: 5 vs 6\).*--views-from"):
        train((world / "a", tmp_path / "c"), tmp_path / "run")
    result = run_cli(*train_args(world / "a", tmp_path / "r2", "--cache", str(tmp_path / "c")))
    assert result.returncode == 1 and "not aligned" in result.stderr
    with pytest.raises(ProteusError, match="3 values for 2 --cache"):
        train((world / "a", world / "b"), tmp_path / "r3", lambda_token=(1.0, 1.0, 1.0))
    with pytest.raises(ProteusError, match=r"all zero, nothing to train \(for --cache .*b, "):
        train((world / "a", world / "b"), tmp_path / "r4", lambda_token=(1.0, 0.0))


def test_caches_rendered_by_other_kernels_are_not_aligned(world, tmp_path):
    # Same records, but b's views were rendered by revision 1's kernels (a cache from
    # proteus 0.2): its targets describe other pixels wherever ColorIncreasing was drawn.
    old = writable_copy(world / "b", tmp_path / "b")
    renderer = edit_manifest(old)["renderer"]
    edit_manifest(old, renderer={k: v for k, v in renderer.items() if k != "revision"})
    reseal(old)
    with pytest.raises(ProteusError, match=r"not aligned \(renderer revision 2 vs 1"):
        train((world / "a", old), tmp_path / "run")


def test_two_teachers_with_a_hint_under_ddp_follow_one_process(world, tmp_path):
    # Every head of both teachers and the hint head must get a gradient on every rank, or DDP
    # stalls; and the 2-process run with the same global batch follows the 1-process run.
    extra = ("--cache", str(world / "b"), "--hint", "1:1", "--max-steps", "4")
    one = run_cli(*train_args(world / "a", tmp_path / "one", *extra))
    assert one.returncode == 0, one.stderr
    args = train_args(world / "a", tmp_path / "two", *extra, "--batch-size", "2")
    torchrun = torchrun_cli(2, *args)
    two = subprocess.run(torchrun, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    logs = {run: read_log(tmp_path / run) for run in ("one", "two")}
    for key in ("loss", "loss_hint.t1", "loss_token.t2"):
        got, want = ([r[key] for r in logs[run]] for run in ("two", "one"))
        np.testing.assert_allclose(got, want, rtol=1e-4)
