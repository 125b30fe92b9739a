"""The typed records a run folder shares between the trainer, its checkpoints and their
readers (eval, export, viz, compare, sweep).

:class:`TeacherRecord` is one teacher of a run as ``config.json`` (``teachers``) and every
checkpoint (``teachers``) hold it: what it produced targets with, where they came from, and
the objective that taught the student from them, which is enough to rebuild its heads.
On disk it stays the plain JSON it always was (``to_json``/``from_json``), so runs written
before these records existed read unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from proteus.common.models.parts import Hint, Lambdas


@dataclass(frozen=True)
class SourceIdentity:
    """Where a teacher's targets came from: a cache (its path or URL and manifest digest),
    or an online teacher (``online:<name>``, no digest)."""

    path: str
    teacher: str | None = None
    weights_sha256: str | None = None
    manifest_sha256: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SourceIdentity:
        return cls(
            str(data.get("path", "?")),
            data.get("teacher"),
            data.get("weights_sha256"),
            data.get("manifest_sha256"),
        )


@dataclass(frozen=True)
class TeacherRecord:
    """One teacher of a run. Checkpoints of format 1 recorded only ``dim``, ``lambdas`` and
    the source (``cache``); the other fields then read as unknown (None or empty)."""

    dim: int
    lambdas: Lambdas
    source: SourceIdentity
    name: str | None = None  # registry name (or timm:<model>)
    family: str | None = None  # dinov2 | clip | … (decides the reference student style)
    grid: tuple[int, int] | None = None  # its patch grid
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    hints: tuple[Hint, ...] = ()  # student block ↔ this teacher's layer (teacher index 0)
    hint_dims: dict[str, int] = field(default_factory=dict)  # hint key -> layer width
    targets_read: tuple[str, ...] = ()  # the arrays its losses read

    @property
    def weights_sha256(self) -> str | None:
        return self.source.weights_sha256

    def objective_key(self) -> tuple[dict[str, float], list[list[int]]]:
        """What must match for a checkpoint to resume: its λ and hint pairs."""
        return asdict(self.lambdas), [[h.block, h.layer] for h in self.hints]

    def to_json(self) -> dict[str, Any]:
        """The layout of config.json's and checkpoints' ``teachers`` entries."""
        return {
            "name": self.name,
            "family": self.family,
            "dim": self.dim,
            "grid": list(self.grid) if self.grid else None,
            "image_size": self.image_size,
            "mean": list(self.mean) if self.mean else None,
            "std": list(self.std) if self.std else None,
            "cache": asdict(self.source),
            "lambdas": asdict(self.lambdas),
            "hints": [[h.block, h.layer] for h in self.hints],
            "hint_dims": dict(self.hint_dims),
            "targets_read": list(self.targets_read),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TeacherRecord:
        grid = data.get("grid")
        return cls(
            dim=int(data["dim"]),
            lambdas=Lambdas(**data["lambdas"]),
            source=SourceIdentity.from_json(data.get("cache") or {}),
            name=data.get("name"),
            family=data.get("family"),
            grid=(int(grid[0]), int(grid[1])) if grid else None,
            image_size=data.get("image_size"),
            mean=tuple(data["mean"]) if data.get("mean") else None,
            std=tuple(data["std"]) if data.get("std") else None,
            hints=tuple(Hint(int(b), int(layer)) for b, layer in data.get("hints", [])),
            hint_dims={k: int(v) for k, v in data.get("hint_dims", {}).items()},
            targets_read=tuple(data.get("targets_read", ())),
        )


@dataclass(frozen=True)
class RunRecord:
    """``config.json``: the options as given, the recipe, every resolved value and the plan
    of the run. The trainer writes it when a run starts (and again on resume); ``proteus
    compare`` and ``proteus sweep`` read it back."""

    config: dict[str, Any]  # the options as given (what `proteus sweep` compares a rerun to)
    recipe: dict[str, Any]  # the named defaults (train/recipe.py)
    resolved: dict[str, Any]  # the options with the recipe's values filled in
    student_style: str
    lr: float  # the peak learning rate, after the recipe's batch rule
    world: int
    global_batch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    student_grid: tuple[int, int]
    standardize: bool
    subset: dict[str, Any]  # the chosen classes and counts of --subset-*
    images: int  # images the sampler draws from
    teachers: list[TeacherRecord]
    views_sha256: str | None = None  # the shared views of several aligned caches
    proteus_version: str = ""
    repeated_aug: int | None = None  # copies of each image per epoch the sampler took
    gauge: dict[str, Any] = field(default_factory=dict)  # {"every": N, "sets": {name: count}}
    adjustments: list[str] = field(default_factory=list)  # what the run changed, and why
    # Per teacher: the targets learnt as PCA coefficients (train/target_space.py), name ->
    # {"k", "dim", "loss_scale_to_decoded"}; empty where all are learnt in teacher units.
    target_space: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        teachers = [t.to_json() for t in self.teachers]
        first = teachers[0]
        return {
            "proteus_version": self.proteus_version,
            "config": self.config,
            "recipe": self.recipe,
            "resolved": self.resolved,
            "student_style": self.student_style,
            "lambdas": first["lambdas"],  # the first teacher's, as "teacher" and "cache"
            "lr": self.lr,
            "world": self.world,
            "global_batch": self.global_batch,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "student_grid": list(self.student_grid),
            "standardize": self.standardize,
            "targets_read": first["targets_read"],
            "subset": self.subset,
            "images": self.images,
            "cache": first["cache"],
            "teacher": {
                k: first[k] for k in ("name", "family", "dim", "grid", "image_size", "mean", "std")
            },
            "teachers": teachers,
            "views_sha256": self.views_sha256,
            "repeated_aug": self.repeated_aug,
            "gauge": self.gauge,
            "adjustments": self.adjustments,
            "target_space": self.target_space,
        }
