"""Growing a cache survives SIGKILL anywhere (while the new views are laid out, between the
target files of a shard holding old and new rows, while sealing): the same command again
gives the uninterrupted growth's bytes. Also on an object store, and under torchrun."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imagegen
import pytest
from extract_helpers import cli_args, cli_env, run_cli, target_bytes, torchrun_cli

from proteus.common.cache.reader import Cache
from proteus.common.cache.verify import verify_cache

pytestmark = pytest.mark.slow  # real CLI subprocesses; still run by make test


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("grows")
    imagegen.image_folder(root / "data", classes=3, per_class=4)
    imagegen.save_teacher_weights("tiny_dinov2", root / "w.safetensors")
    return root


def _args(workdir: Path, out: Path | str, views: int) -> list[str]:
    # 12 images: 24 views in shards of 5, so the last old shard is half old, half new.
    args = cli_args(workdir / "data", out, workdir / "w.safetensors", "--shard-views", "5")
    return [*args, "--views", str(views)]


@pytest.fixture(scope="module")
def reference(workdir) -> dict[str, bytes]:
    """2 views, then grown to 4, uninterrupted."""
    out = workdir / "reference"
    for views in (2, 4):
        run = run_cli(*_args(workdir, out, views))
        assert run.returncode == 0, run.stderr
    return target_bytes(out)


@pytest.mark.parametrize("fault", ["grow:1", "shard-write:2", "seal:1"])
def test_sigkill_while_growing_then_rerun_equals_uninterrupted(workdir, reference, fault, tmp_path):
    out = tmp_path / "cache"
    assert run_cli(*_args(workdir, out, 2)).returncode == 0
    killed = run_cli(*_args(workdir, out, 4), env_extra={"PROTEUS_FAULT": fault})
    assert killed.returncode == -9, killed.stderr
    assert Cache(out, require_sealed=False).manifest.state != "sealed"
    rerun = run_cli(*_args(workdir, out, 4))
    assert rerun.returncode == 0, rerun.stderr
    assert verify_cache(out) == [] and target_bytes(out) == reference
    assert Cache(out).manifest.stats == Cache(workdir / "reference").manifest.stats


def test_two_processes_grow_as_one(workdir, reference, tmp_path):
    out = tmp_path / "cache"
    assert run_cli(*_args(workdir, out, 2)).returncode == 0
    two = torchrun_cli(2, *_args(workdir, out, 4))
    run = subprocess.run(two, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert verify_cache(out) == [] and target_bytes(out) == reference
