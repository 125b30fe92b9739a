"""Several students from one stream: each trains as it would alone, resumes exactly after a
kill, runs under DDP, stops alone when it diverges; `sweep --together` groups variants."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace

import pytest
import torch
from cli_helpers import error
from extract_helpers import cli_env, run_cli, tiny_cache, torchrun_cli
from train_helpers import train_args, train_config

from proteus.common.runs.checkpoint import load_checkpoint
from proteus.common.runs.logs import read_log
from proteus.common.runtime.errors import ProteusError
from proteus.train.runner import run_together
from proteus.train.together import check_together, split_students

TWO = ("--student", "tiny_vit14", "--student", "tiny_vit7")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_cache(tmp_path_factory.mktemp("together"), classes=3)


def _losses(run) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k.startswith(("loss", "gauge/"))} for r in read_log(run)]


def _args(world, out, *extra):
    """train_args with two students (the helper's --student replaced)."""
    args = train_args(world / "cache", out, *extra)
    at = args.index("--student")
    return [*args[:at], *TWO, *args[at + 2 :]]


def test_each_student_together_logs_what_it_logs_alone(world, tmp_path):
    # Another architecture on another grid (other masks), other lr, λ and EMA: what each
    # student computes does not depend on the company it trains in.
    a = train_config(world / "cache", tmp_path / "t" / "a", max_steps=8, eval_every=4)
    b = replace(
        a, out=tmp_path / "t" / "b", student="tiny_vit7", lr=1e-3, lambda_patch=0.5, ema_decay=0
    )
    results = run_together([a, b])
    assert [r.steps for r in results] == [8, 8] and all(r.error is None for r in results)
    for cfg in (a, b):
        alone = replace(cfg, out=tmp_path / "alone" / cfg.out.name)
        run_together([alone])
        assert _losses(cfg.out) == _losses(alone.out)  # exactly, gauge included
        together, single = load_checkpoint(cfg.out), load_checkpoint(alone.out)
        for key, value in together["student"].items():
            assert torch.equal(value, single["student"][key]), key
    config = json.loads((b.out / "config.json").read_text())
    assert config["config"]["student"] == "tiny_vit7" and config["student_grid"] == [4, 4]


def test_killed_together_resumes_every_student_exactly(world, tmp_path):
    full = run_cli(*_args(world, tmp_path / "full", "--checkpoint-every", "4"))
    assert full.returncode == 0, full.stderr
    assert "trained 12 steps into" in full.stdout and (tmp_path / "full" / "tiny_vit7").is_dir()
    # Pass 16 through the step's failpoint is the second student's step 7, after the first
    # student checkpointed step 8 and before the second did: their checkpoints disagree.
    out = tmp_path / "killed"
    args = _args(world, out, "--checkpoint-every", "4")
    killed = run_cli(*args, env_extra={"PROTEUS_FAULT": "train-step:16"})
    assert killed.returncode == -9
    assert load_checkpoint(out / "tiny_vit14")["step"] == 8
    assert load_checkpoint(out / "tiny_vit7")["step"] == 4
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for name in ("tiny_vit14", "tiny_vit7"):
        assert _losses(out / name) == _losses(tmp_path / "full" / name)
        assert [r["step"] for r in read_log(out / name)] == list(range(12))


def test_two_processes_train_two_students_as_one_does(world, tmp_path):
    one = run_cli(*_args(world, tmp_path / "one", "--max-steps", "4"))
    assert one.returncode == 0, one.stderr
    args = _args(world, tmp_path / "two", "--max-steps", "4", "--batch-size", "2")
    two = subprocess.run(
        torchrun_cli(2, *args), env=cli_env(), capture_output=True, text=True, timeout=300
    )
    assert two.returncode == 0, two.stderr[-3000:]
    for name in ("tiny_vit14", "tiny_vit7"):
        want = [r["loss"] for r in read_log(tmp_path / "one" / name)]
        got = [r["loss"] for r in read_log(tmp_path / "two" / name)]
        assert got == pytest.approx(want, rel=1e-4)


def test_a_diverging_student_stops_alone_and_is_named(world, tmp_path, capfd):
    good = train_config(world / "cache", tmp_path / "good", max_steps=12)
    bad = replace(good, out=tmp_path / "bad", lr=1e30, checkpoint_every=1, ema_decay=0.0)
    results = run_together([bad, good])
    assert results[1].error is None and results[1].steps == 12
    assert results[0].error is not None and results[0].steps < 12
    assert f"student tiny_vit14 ({bad.out}): step" in results[0].error
    assert "the others go on" in capfd.readouterr().err
    assert load_checkpoint(bad.out)["step"] == len(read_log(bad.out))  # its last good step
    assert len(read_log(good.out)) == 12


def test_runs_that_cannot_share_a_stream_are_refused(world, tmp_path):
    a = train_config(world / "cache", tmp_path / "a")
    with pytest.raises(ProteusError, match=r"--batch-size 4 → 8.*share cache, views, seed"):
        check_together([a, replace(a, out=tmp_path / "b", batch_size=8)])
    with pytest.raises(ProteusError, match="same run folder"):
        check_together([a, replace(a, student="tiny_vit7")])
    with pytest.raises(ProteusError, match="--student tiny_vit14: given twice"):
        split_students(a, ["tiny_vit14", "tiny_vit7", "tiny_vit14"])
    # Options a student may have of its own are not the stream's.
    check_together([a, replace(a, out=tmp_path / "c", lr=1, lambda_fea=0, eval_every=0)])


def test_cli_names_a_repeated_student_in_one_line(world, tmp_path):
    args = _args(world, tmp_path / "x", "--student", "tiny_vit7")
    out = error(args)
    assert "--student tiny_vit7: given twice" in out and len(out.strip().splitlines()) == 1


def test_sweep_together_trains_the_sharing_variants_in_one_stream(world, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    shared = {
        "cache": str(world / "cache"),
        "student": "tiny_vit14",
        "max-steps": 4,
        "batch-size": 4,
        "device": "cpu",
        "threads": 1,
        "tensorboard": False,
    }
    variants = [
        {"name": "base"},
        {"name": "token", "lambda-fea": 0, "lambda-patch": 0, "lr": 1e-3},
        {"name": "small", "student": "tiny_vit7"},
        {"name": "wide", "batch-size": 6},
    ]
    sweep.write_text(
        json.dumps({"out": str(tmp_path / "runs"), "train": shared, "variants": variants})
    )
    printed = run_cli("sweep", str(sweep), "--together", "--print-commands")
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert "--together --only base --only token --only small" in lines[0]
    assert lines[1].startswith("proteus train") and "--batch-size 6" in lines[1]
    ran = run_cli("sweep", str(sweep), "--together")
    assert ran.returncode == 0, ran.stderr
    assert "together: base, token, small (one stream)" in ran.stdout
    assert "alone: wide (its stream differs from base's: --batch-size 4 → 6)" in ran.stdout
    for name in ("base", "token", "small", "wide"):
        assert len(read_log(tmp_path / "runs" / name)) == 4
    options = [f"--{k}={v}" for k, v in shared.items() if k != "tensorboard"]
    alone = run_cli("train", *options, "--no-tensorboard", "--out", str(tmp_path / "alone"))
    assert alone.returncode == 0, alone.stderr
    assert _losses(tmp_path / "runs" / "base") == _losses(tmp_path / "alone")
    again = run_cli("sweep", str(sweep), "--together")
    assert again.returncode == 0 and again.stdout.count("already trained, skipping") == 4
