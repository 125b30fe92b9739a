"""Training in tests: a shared tiny cache, and runs in-process or as CLI subprocesses."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from proteus.train.config import TrainConfig
from proteus.train.runner import run_train


def train_config(cache: Path | None, out: Path, **overrides) -> TrainConfig:
    base = TrainConfig(
        cache=cache,
        student="tiny_vit14",
        out=out,
        max_steps=12,
        batch_size=4,
        lr=2e-3,
        warmup_epochs=0,
        drop_path=0.0,
        ema_decay=0.9,
        device="cpu",
        checkpoint_every=100,
        tensorboard=False,
        progress=False,
        render_threads=1,
    )
    return replace(base, **overrides)


@contextmanager
def preempted_after(steps: int) -> Iterator[None]:
    """Runs inside get SIGTERM after ``steps`` steps, through the real signal handler (as a
    scheduler's preemption): they checkpoint and stop."""
    from proteus.train import runner

    original = runner._Learner._record

    def record(self, step, values, seconds):
        if step + 1 == steps:
            signal.raise_signal(signal.SIGTERM)
        return original(self, step, values, seconds)

    runner._Learner._record = record
    try:
        yield
    finally:
        runner._Learner._record = original


def train(cache: Path | None, out: Path, **overrides):
    return run_train(train_config(cache, out, **overrides))


def train_args(
    cache: Path | None, out: Path, *extra: str, student: str = "tiny_vit14"
) -> list[str]:
    """`proteus train` arguments (--student repeated trains several students: pass
    ``student`` to train another one)."""
    source = [] if cache is None else ["--cache", str(cache)]
    return [
        "train",
        *source,
        "--student",
        student,
        "--out",
        str(out),
        "--max-steps",
        "12",
        "--batch-size",
        "4",
        "--lr",
        "2e-3",
        "--warmup-epochs",
        "0",
        "--drop-path",
        "0",
        "--ema-decay",
        "0.9",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-tensorboard",
        *extra,
    ]
