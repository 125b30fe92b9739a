"""Checkpoints: written atomically, loaded with ``weights_only=True``.

A checkpoint is written to a temporary file, flushed to disk, and renamed over
``checkpoint.pt``, so a kill at any moment leaves either the previous checkpoint or the new
one, never a torn file. Loading never unpickles code.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import torch

from proteus.common.errors import ProteusError
from proteus.common.faults import failpoint

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(run: Path, state: dict[str, Any]) -> Path:
    path = Path(run) / CHECKPOINT
    tmp = path.with_name(f".{CHECKPOINT}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            failpoint("checkpoint-write")  # the new file is half-way: written, not renamed
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise ProteusError(
                f"{path}: disk full while saving the checkpoint; the previous checkpoint is "
                "intact — free space and rerun with --resume"
            ) from exc
        raise ProteusError(f"{path}: cannot save the checkpoint ({exc.strerror or exc})") from exc
    return path


def resolve_checkpoint(path: Path) -> Path:
    """A run folder (its checkpoint) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise ProteusError(f"--checkpoint {path}: no checkpoint there")
    return path


def load_checkpoint(
    path: Path, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """``mmap``: tensors stay on disk until touched (for reading the small entries only)."""
    path = resolve_checkpoint(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, …
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProteusError(
            f"{path}: not a loadable proteus checkpoint ({first[:200]}); only tensors and "
            "plain values are accepted (weights_only)"
        ) from exc
