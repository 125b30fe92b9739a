"""Training killed mid-epoch or mid-checkpoint-write, or out of disk while checkpointing:
no torn checkpoint is ever loaded, and the resumed run's per-step losses equal an
uninterrupted run's."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from extract_helpers import cli_env, run_cli, tiny_cache
from train_helpers import train_args

from proteus.common.runs.checkpoint import load_checkpoint
from proteus.common.runs.logs import read_log

pytestmark = pytest.mark.slow  # real CLI subprocesses; still run by make test


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tiny_cache(tmp_path_factory.mktemp("trainfaults"), classes=3)
    full = run_cli(*train_args(root / "cache", root / "full"))
    assert full.returncode == 0, full.stderr
    return root


def _losses(run):
    return [r["loss"] for r in read_log(run)]


def _safe_log(run):
    try:
        return read_log(run)
    except (ValueError, OSError):
        return []


def test_sigkill_mid_epoch_then_resume(world, tmp_path):
    out = tmp_path / "killed"
    args = train_args(world / "cache", out, "--checkpoint-every", "4")
    proc = subprocess.Popen(
        [sys.executable, "-m", "proteus", *args],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(_safe_log(out)) >= 5:  # step 4's checkpoint exists; mid-epoch 2 (3 steps/epoch)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "finished before the kill"
    resumed = run_cli(*train_args(world / "cache", out, "--checkpoint-every", "4", "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert _losses(out) == _losses(world / "full")
    assert [r["step"] for r in read_log(out)] == list(range(12))


def test_sigkill_mid_checkpoint_write_keeps_the_previous_checkpoint(world, tmp_path):
    out = tmp_path / "torn"
    args = train_args(world / "cache", out, "--checkpoint-every", "4")
    # The second checkpoint (step 8) dies half-written: step 4's must be what loads.
    killed = run_cli(*args, env_extra={"PROTEUS_FAULT": "checkpoint-write:2"})
    assert killed.returncode == -signal.SIGKILL
    assert load_checkpoint(out)["step"] == 4
    assert list(out.glob(".checkpoint.pt.*.partial"))  # the torn file, never loaded
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert _losses(out) == _losses(world / "full")


def test_disk_full_while_checkpointing(world, tmp_path):
    out = tmp_path / "full-disk"
    args = train_args(world / "cache", out, "--checkpoint-every", "4")
    failed = run_cli(*args, env_extra={"PROTEUS_FAULT": "checkpoint-write:2:enospc"})
    assert failed.returncode == 1
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: ") and "disk full while saving the checkpoint" in error
    assert "previous checkpoint is intact" in error and "Traceback" not in failed.stderr
    assert load_checkpoint(out)["step"] == 4 and not list(out.glob("*.partial"))
    resumed = run_cli(*args, "--resume")  # space is back
    assert resumed.returncode == 0, resumed.stderr
    assert _losses(out) == _losses(world / "full")
