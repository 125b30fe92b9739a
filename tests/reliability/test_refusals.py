"""Refusals: each a one-line error, a non-zero exit, and nothing overwritten. Untrusted
checkpoint and weight files never run code. Readers and verify share a cache safely."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import imagegen
import pytest
import torch
from extract_helpers import (
    cli_args,
    cli_env,
    edit_manifest,
    run_cli,
    target_bytes,
    tiny_cache,
    writable_copy,
)
from train_helpers import train, train_args

from proteus.common.runs.logs import read_log

pytestmark = pytest.mark.slow  # real CLI subprocesses; still run by make test


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tiny_cache(tmp_path_factory.mktemp("refuse"))
    train(root / "cache", root / "run", max_steps=4)
    return root


def _refused(run: subprocess.CompletedProcess, text: str) -> None:
    assert run.returncode == 1, run.stdout + run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and text in last, last
    assert "Traceback" not in run.stderr


def _snapshot(folder) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "extra, key",
    [
        (("--teacher", "tiny_dinov2_reg"), "teacher"),
        (("--aug", "flip_prob=0"), "policy"),
        (("--seed", "3"), "seed"),
        (("--image-size", "42"), "image_size"),
    ],
)
def test_extract_into_a_cache_made_differently(world, extra, key):
    before = _snapshot(world / "cache")
    args = cli_args(world / "data", world / "cache", world / "w.safetensors", "--views", "2")
    if extra[0] == "--teacher":
        args[args.index("tiny_dinov2")] = extra[1]
        args[args.index("--weights") : args.index("--weights") + 2] = []
        weights = imagegen.save_teacher_weights(extra[1], world / "reg.safetensors")
        args += ["--weights", str(weights)]
    else:
        args += list(extra)
    _refused(run_cli(*args), f"{key}: cache has")
    assert _snapshot(world / "cache") == before


def test_train_on_an_unsealed_cache(world, tmp_path):
    cache = writable_copy(world / "cache", tmp_path / "cache")
    edit_manifest(cache, state="writing")
    _refused(run_cli(*train_args(cache, tmp_path / "r")), "not sealed")
    assert not (tmp_path / "r").exists()


def test_a_cache_from_a_newer_proteus(world, tmp_path):
    cache = writable_copy(world / "cache", tmp_path / "cache")
    edit_manifest(cache, format_version=2)
    _refused(run_cli(*train_args(cache, tmp_path / "r")), "upgrade proteus")
    _refused(run_cli("cache", "info", str(cache)), "cache format version 2")


def test_resuming_a_checkpoint_of_another_student(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world / "run", run)
    before = _snapshot(run)
    args = train_args(world / "cache", run, "--resume", student="tiny_vit7")
    _refused(run_cli(*args), "student_name='tiny_vit14', this run asks 'tiny_vit7'")
    assert _snapshot(run) == before


def test_an_existing_run_is_not_overwritten(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world / "run", run)
    before = _snapshot(run)
    _refused(run_cli(*train_args(world / "cache", run)), "pass --resume")
    assert _snapshot(run) == before


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("command", ["export", "eval-knn", "resume"])
def test_a_checkpoint_that_would_run_code_is_refused(world, tmp_path, command):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    state = torch.load(world / "run" / "checkpoint.pt", weights_only=True)
    state["config"] = _Exploit(str(marker))
    torch.save(state, run / "checkpoint.pt")
    args = {
        "export": ["export", "--checkpoint", str(run), "--out", str(tmp_path / "e")],
        "eval-knn": [
            "eval",
            "knn",
            "--checkpoint",
            str(run),
            "--train",
            str(world / "data"),
            "--val",
            str(world / "data"),
        ],
        "resume": train_args(world / "cache", run, "--resume"),
    }[command]
    _refused(run_cli(*args), "only tensors and plain values are accepted")
    assert not marker.exists()


def test_weights_that_would_run_code_are_refused(world, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"x": _Exploit(str(marker))}, tmp_path / "evil.pt")
    args = cli_args(world / "data", tmp_path / "c", tmp_path / "evil.pt")
    _refused(run_cli(*args), "refused to load")
    assert not marker.exists()


def test_two_trainings_and_a_verify_share_one_cache(world, tmp_path):
    before = target_bytes(world / "cache")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proteus",
                *train_args(world / "cache", tmp_path / f"run{i}", "--seed", str(i)),
            ],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ] + [
        subprocess.Popen(
            [sys.executable, "-m", "proteus", "cache", "verify", str(world / "cache")],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    assert len(read_log(tmp_path / "run0")) == len(read_log(tmp_path / "run1")) == 12
    assert target_bytes(world / "cache") == before
