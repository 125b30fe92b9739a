"""The SLURM recipes in examples/slurm run as written: under a stand-in srun/scontrol (one
node, CPU), a preempted training is requeued and resumes to the same losses as an
uninterrupted run; a killed extraction is requeued and sealed by the rerun."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from extract_helpers import cli_env, tiny_cache
from train_helpers import train

from proteus.common.cache.verify import verify_cache
from proteus.common.runs.checkpoint import checkpoint_step
from proteus.common.runs.logs import read_log

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "slurm"


@pytest.fixture
def slurm(tmp_path) -> dict[str, str]:
    """srun runs its command here; scontrol names this host and records requeues."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/bash\nshift\nexec "$@"\n')  # drops --kill-on-bad-exit
    (bin_dir / "scontrol").write_text(
        '#!/bin/bash\nif [ "$1" = show ]; then echo localhost; else echo "$@" >> "$REQUEUES"; fi\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    with socket.socket() as s:  # a free port for torchrun's rendezvous
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    venv_bin = Path(sys.executable).parent  # torchrun and proteus
    env = cli_env() | {
        "PATH": f"{bin_dir}{os.pathsep}{venv_bin}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "localhost",
        "SLURM_NNODES": "1",
        "SLURM_GPUS_ON_NODE": "1",
        "SLURM_JOB_ID": "4242",
        "MASTER_PORT": str(port),
        "REQUEUES": str(tmp_path / "requeues.txt"),
    }
    return env


def _sbatch(script: str, env: dict[str, str], **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(EXAMPLES / script)],
        env=env | extra,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _requeues(env) -> list[str]:
    path = Path(env["REQUEUES"])
    return path.read_text().splitlines() if path.exists() else []


def test_preempted_training_is_requeued_and_resumes_exactly(slurm, tmp_path):
    root = tiny_cache(tmp_path / "w")
    run = tmp_path / "run"
    options = {
        "CACHE": str(root / "cache"),
        "STUDENT": "tiny_vit14",
        "RUN": str(run),
        "BATCH": "4",
        "EXTRA_ARGS": "--max-steps 6 --device cpu --threads 1 --no-tensorboard "
        "--checkpoint-every 100 --lr 2e-3 --warmup-epochs 0",
    }
    # SIGTERM after step 2, as SLURM's --signal sends before the time limit.
    first = _sbatch("train.sbatch", slurm, **options, PROTEUS_FAULT="train-step:2:term")
    assert first.returncode != 0, first.stderr[-2000:]
    assert "stopped by signal" in first.stderr
    assert _requeues(slurm) == ["requeue 4242"] and checkpoint_step(run) == 2
    second = _sbatch("train.sbatch", slurm | {"SLURM_RESTART_COUNT": "1"}, **options)
    assert second.returncode == 0, second.stderr[-2000:]
    assert _requeues(slurm) == ["requeue 4242"]  # finished: not requeued again
    straight = train(
        root / "cache", tmp_path / "straight", max_steps=6, ema_decay=None, drop_path=None
    )
    assert straight.steps == 6
    ours = [r["loss"] for r in read_log(run)]
    theirs = [r["loss"] for r in read_log(tmp_path / "straight")]
    assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-6)


def test_killed_extraction_is_requeued_and_sealed_by_the_rerun(slurm, tmp_path):
    import imagegen

    data = imagegen.image_folder(tmp_path / "data", classes=2, per_class=3)
    weights = imagegen.save_teacher_weights("tiny_dinov2", tmp_path / "w.safetensors")
    options = {
        "TEACHER": "tiny_dinov2",
        "DATA": str(data),
        "OUT": str(tmp_path / "cache"),
        "VIEWS": "2",
        "EXTRA_ARGS": f"--weights {weights} --device cpu --threads 1 --shard-views 2",
    }
    first = _sbatch("extract.sbatch", slurm, **options, PROTEUS_FAULT="shard-write:3")
    assert first.returncode != 0 and _requeues(slurm) == ["requeue 4242"]
    second = _sbatch("extract.sbatch", slurm, **options)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "state      sealed" in second.stdout
    assert verify_cache(tmp_path / "cache") == []
