"""Extraction killed (SIGKILL) or out of disk at any point, then the same command again:
the sealed cache equals an uninterrupted run's, byte for byte, and verifies.

Kills come two ways: from outside when the cache reaches a state (polling), and from inside
at a named point through PROTEUS_FAULT (while rendering, between the target files of one
shard, while sealing). Also the multi-process split under torchrun. All through the real CLI
in subprocesses (tiny teacher via PROTEUS_PLUGINS).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imagegen
import pytest
from extract_helpers import cli_args, cli_env, run_cli, target_bytes, torchrun_cli

from proteus.common.cache.verify import verify_cache

pytestmark = pytest.mark.slow  # real CLI subprocesses; still run by make test


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    imagegen.image_folder(root / "data", classes=3, per_class=4)
    imagegen.save_teacher_weights("tiny_dinov2", root / "w.safetensors")
    return root


@pytest.fixture(scope="module")
def reference(workdir) -> dict[str, bytes]:
    """One uninterrupted single-process CLI run."""
    out = workdir / "reference"
    run = run_cli(*cli_args(workdir / "data", out, workdir / "w.safetensors", "--shard-views", "2"))
    assert run.returncode == 0, run.stderr
    return target_bytes(out)


def _start(workdir: Path, out: Path) -> subprocess.Popen:
    args = cli_args(workdir / "data", out, workdir / "w.safetensors", "--shard-views", "2")
    return subprocess.Popen(
        [sys.executable, "-m", "proteus", *args],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; False if it finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    proc.kill()
    raise AssertionError("extraction neither finished nor reached the kill point")


def _markers(out: Path) -> int:
    return len(list((out / "progress").glob("shard-*.json"))) if (out / "progress").is_dir() else 0


def _stats(out: Path) -> dict:
    return json.loads((out / "zarr.json").read_text())["attributes"]["proteus"]["stats"]


def _same_stats(out: Path, workdir: Path) -> None:
    """Statistics merged from shard files written by other runs equal an uninterrupted run's."""
    ours, theirs = _stats(out), _stats(workdir / "reference")
    assert set(ours) == set(theirs) == {"cls", "patch", "layer_1"}
    for name, values in theirs.items():
        assert ours[name]["tokens"] == values["tokens"]
        for key in ("mean", "std"):
            assert ours[name][key] == pytest.approx(values[key], rel=1e-6, abs=1e-9)


def _state(out: Path) -> str | None:
    try:
        return json.loads((out / "zarr.json").read_text())["attributes"]["proteus"]["state"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.parametrize(
    "point",
    ["laying-out", "first-shard", "mid-run"],
)
def test_sigkill_then_rerun_equals_uninterrupted(workdir, reference, point, tmp_path):
    out = tmp_path / "cache"
    ready = {
        "laying-out": lambda: (out / "zarr.json").exists(),
        "first-shard": lambda: (out / "targets").is_dir() and _state(out) == "writing",
        "mid-run": lambda: _markers(out) >= 8,
    }[point]
    assert _kill_when(_start(workdir, out), ready), "finished before the kill point"
    assert _state(out) != "sealed"
    rerun = run_cli(
        *cli_args(workdir / "data", out, workdir / "w.safetensors", "--shard-views", "2")
    )
    assert rerun.returncode == 0, rerun.stderr
    assert _state(out) == "sealed" and verify_cache(out) == []
    assert target_bytes(out) == reference
    assert not list(out.rglob("*.partial"))
    _same_stats(out, workdir)


def test_two_processes_under_torchrun_equal_one(workdir, reference, tmp_path):
    out = tmp_path / "cache"
    args = cli_args(workdir / "data", out, workdir / "w.safetensors", "--shard-views", "2")
    torchrun = torchrun_cli(2, *args)
    run = subprocess.run(torchrun, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert verify_cache(out) == [] and target_bytes(out) == reference
    assert run.stdout.count("sealed ") == 1  # the summary comes from rank 0 only
    _same_stats(out, workdir)


def test_a_copy_of_a_sealed_cache_verifies(workdir, reference, tmp_path):
    # Caches are moved between machines and object stores: nothing in them is absolute
    # except the dataset root, which readers can override.
    out = workdir / "reference"
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    assert verify_cache(moved) == []


@pytest.mark.parametrize(
    "fault",
    ["render:5", "shard-write:5", "seal:1"],
    ids=["while-rendering", "mid-shard-write", "while-sealing"],
)
def test_killed_at_a_named_point_then_rerun_equals_uninterrupted(
    workdir, reference, fault, tmp_path
):
    out = tmp_path / "cache"
    args = cli_args(workdir / "data", out, workdir / "w.safetensors", "--shard-views", "2")
    killed = run_cli(*args, env_extra={"PROTEUS_FAULT": fault})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _state(out) == "writing"
    markers_before = _markers(out)
    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert _state(out) == "sealed" and verify_cache(out) == []
    assert target_bytes(out) == reference
    manifest = json.loads((out / "zarr.json").read_text())["attributes"]["proteus"]
    assert manifest["counts"]["views"] == 36 and manifest["counts"]["usable_views"] == 36
    assert manifest["skipped"] == []  # nothing counted twice, nothing lost
    assert _markers(out) == 18 >= markers_before
    _same_stats(out, workdir)


def test_disk_full_is_a_clear_error_and_resumable(workdir, reference, tmp_path):
    out = tmp_path / "cache"
    args = cli_args(workdir / "data", out, workdir / "w.safetensors", "--shard-views", "2")
    full = run_cli(*args, env_extra={"PROTEUS_FAULT": "shard-write:7:enospc"})
    assert full.returncode == 1
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "disk full while writing shard 2" in last
    assert "re-run the same command" in last and "Traceback" not in full.stderr
    assert not (out / "progress" / "shard-000002.json").exists()  # not treated as done
    rerun = run_cli(*args)  # space is back
    assert rerun.returncode == 0, rerun.stderr
    assert target_bytes(out) == reference and verify_cache(out) == []
