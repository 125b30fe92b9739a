"""Checkpoints: what one holds (:class:`Checkpoint`), written atomically, loaded with
``weights_only=True``.

A checkpoint is written to a temporary file, flushed to disk, and renamed over
``checkpoint.pt``, so a kill at any moment leaves either the previous checkpoint or the new
one, never a torn file. Loading never unpickles code. On disk it is a plain dict of tensors
and JSON values; :class:`Checkpoint` is the one reader and writer of that dict, and upgrades
older formats as it reads them.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from proteus.common.runs.records import TeacherRecord
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.faults import failpoint

CHECKPOINT = "checkpoint.pt"  # its name in a run folder (folder.py: RunFolder.checkpoint)
FORMAT = 2  # 2: per-teacher heads ("teachers", heads under "i."); 1: one teacher's at the top


@dataclass
class Checkpoint:
    """Everything a checkpoint holds. ``teachers[i]`` describes the i-th teacher (its dim,
    λ, hints, hint dims, the targets read, and its source's identity); its heads' weights are
    ``heads`` under ``"i."``."""

    step: int  # the next step to run
    student_name: str
    image_size: int
    mean: tuple[float, ...]  # the teacher's normalisation, to feed the student as trained
    std: tuple[float, ...]
    teachers: list[TeacherRecord]
    student: dict[str, Any]  # state dicts
    heads: dict[str, Any]
    ema: dict[str, Any] | None = None
    optimizer: dict[str, Any] | None = None
    student_style: str = "arch"  # before styles existed: timm's own init
    recipe: str = "legacy"  # before recipes existed: proteus 0.1's defaults
    eval_weights: str = "ema"  # what the recipe evaluates: "raw" or "ema"
    batch_size: int | None = None
    world: int | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the options as given
    student_grid: list[int] | None = None  # rows, cols of its dense tokens (a convnet's: set)
    # Per teacher: the statistics its targets were standardised with (TargetStats state), or
    # None where they were learnt raw (--no-standardize, and every run before 0.2).
    target_stats: list[dict[str, Any] | None] | None = None
    # A student that learnt PCA coefficients (train/target_space.py): its heads as trained,
    # to resume; ``heads`` holds them folded into teacher units. None otherwise.
    coefficient_heads: dict[str, Any] | None = None
    format: int = FORMAT  # as read: resuming needs the current one

    REQUIRED = ("student_name", "image_size", "student", "heads", "mean", "std")

    def to_state(self) -> dict[str, Any]:
        # Shallow on purpose: asdict() would deep-copy every tensor of the state dicts.
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state |= {"mean": list(self.mean), "std": list(self.std)}
        state["teachers"] = [t.to_json() for t in self.teachers]
        first = state["teachers"][0]
        # The first teacher again at the top level, for readers of one-teacher runs.
        return state | {
            "teacher_dim": first["dim"],
            "teacher": first["cache"].get("teacher"),
            "teacher_family": first["family"],
            "lambdas": first["lambdas"],
            "cache": first["cache"],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], source: Path | str = "checkpoint") -> Checkpoint:
        missing = [key for key in cls.REQUIRED if key not in state]
        if missing:
            raise ProteusError(f"--checkpoint {source}: not a proteus checkpoint (no {missing[0]})")
        state = dict(state)
        state.setdefault("format", 1)
        if "teachers" not in state:  # format 1: one teacher, its heads at the top level
            state["teachers"] = [
                {
                    "dim": state["teacher_dim"],
                    "lambdas": state["lambdas"],
                    "hints": [],
                    "hint_dims": {},
                    "cache": state["cache"],
                    "family": state.get("teacher_family"),
                }
            ]
            state["heads"] = {f"0.{k}": v for k, v in state["heads"].items()}
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in state.items() if k in known and v is not None}
        values["mean"], values["std"] = tuple(state["mean"]), tuple(state["std"])
        values["teachers"] = [TeacherRecord.from_json(t) for t in state["teachers"]]
        return cls(**values)

    @classmethod
    def load(
        cls, path: Path, map_location: str | torch.device = "cpu", mmap: bool = False
    ) -> Checkpoint:
        return cls.from_state(load_checkpoint(path, map_location, mmap), source=path)

    def save(self, run: Path) -> Path:
        return save_checkpoint(run, self.to_state())

    @property
    def grid(self) -> tuple[int, int] | None:
        """The grid a convnet student's dense tokens were resampled to (its teacher's)."""
        return (self.student_grid[0], self.student_grid[1]) if self.student_grid else None

    def teacher_index(self, weights_sha256: str) -> int | None:
        """Which of its teachers has these weights, if any."""
        for index, teacher in enumerate(self.teachers):
            if teacher.weights_sha256 == weights_sha256:
                return index
        return None


def checkpoint_step(path: Path) -> int:
    """The step a checkpoint resumes at, without loading its tensors."""
    return int(load_checkpoint(path, mmap=True)["step"])


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
