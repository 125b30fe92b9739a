"""Several students from one stream: which runs may share it, and where each one's run folder is.

Students trained together see the same batches: every step's views are rendered once and
their targets read once, and each student steps on them with its own heads, λ, optimizer,
schedule, EMA, log and checkpoint (train/runner.py). That is only the same as training each
alone when everything that decides the batches is the same, which :data:`STREAM_FIELDS`
lists; whatever is not in it (the student, its λ and hints, lr, weight decay, warm-up, drop
path, EMA, gradient clip, --standardize, checkpoint and gauge cadence) may differ.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from proteus.common.runtime.errors import ProteusError
from proteus.train.config import TrainConfig

# What decides the views, the batches, the masks and the step count: with --together these
# must agree (after the recipe fills its values in: --repeated-aug and the preset's).
STREAM_FIELDS = (
    "cache",
    "data",
    "teacher",
    "weights",
    "image_size",
    "online_fraction",
    "aug_preset",
    "policy",
    "views",
    "seed",
    "batch_size",
    "epochs",
    "max_steps",
    "repeated_aug",
    "mask_probability",
    "mask_ratio",
    "subset_classes",
    "subset_per_class",
    "subset_fraction",
    "device",
    "shard_cache",
    "shard_cache_gb",
    "render_threads",
)


def stream_key(cfg: TrainConfig) -> dict[str, Any]:
    """The values of ``cfg`` that decide its stream, as JSON (paths as text)."""
    values = cfg.resolved().to_json()
    return {name: values[name] for name in STREAM_FIELDS}


def stream_mismatch(first: TrainConfig, other: TrainConfig) -> list[str]:
    """The stream options on which ``other`` differs from ``first``, each as
    ``option: first's → other's`` (empty: they can train together)."""
    a, b = stream_key(first), stream_key(other)
    return [
        f"--{name.replace('_', '-')} {a[name]!r} → {b[name]!r}" for name in a if a[name] != b[name]
    ]


def check_together(cfgs: Sequence[TrainConfig]) -> None:
    """Refuse a set of runs that cannot share one stream, naming the run and the options."""
    outs: dict[Path, str] = {}
    for cfg in cfgs:
        out = Path(cfg.out)
        if out in outs:
            raise ProteusError(
                f"--out {out}: two students ({outs[out]}, {cfg.student}) would train into the "
                "same run folder"
            )
        outs[out] = cfg.student
        changed = stream_mismatch(cfgs[0], cfg)
        if changed:
            raise ProteusError(
                f"{cfg.out} cannot train in one stream with {cfgs[0].out}: {'; '.join(changed)} "
                "(students trained together share cache, views, seed, batch, masks and "
                "schedule length)"
            )


def folder_name(student: str) -> str:
    """The run folder a student gets under a several-student --out (timm:resnet18 →
    timm_resnet18)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", student).strip("_") or "student"


def split_students(cfg: TrainConfig, students: Sequence[str]) -> list[TrainConfig]:
    """One config per ``--student``: with one student ``cfg`` itself (its --out is the run
    folder); with several, each trains into --out/<student>."""
    if len(students) == 1:
        return [replace(cfg, student=students[0])]
    seen: dict[str, str] = {}
    for student in students:
        name = folder_name(student)
        if name in seen:
            given = "given twice" if seen[name] == student else f"the same folder as {seen[name]}"
            raise ProteusError(
                f"--student {student}: {given}; students trained together need distinct "
                "names (to train one architecture with other options, use `proteus sweep "
                "--together`)"
            )
        seen[name] = student
    return [replace(cfg, student=s, out=Path(cfg.out) / folder_name(s)) for s in students]
