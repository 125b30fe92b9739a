"""The teacher registry: named records, ``timm:<model>`` on demand, and ``build_teacher``."""

from __future__ import annotations

from pathlib import Path

from proteus.common.models.teachers.base import Teacher
from proteus.common.models.teachers.spec import TeacherBuild, TeacherSpec
from proteus.common.models.teachers.timm_teachers import spec_from_timm
from proteus.common.runtime.errors import ProteusError

_REGISTRY: dict[str, TeacherSpec] = {}
TIMM_PREFIX = "timm:"


def register_teacher(spec: TeacherSpec) -> TeacherSpec:
    """Add ``spec`` under ``spec.name``; re-registering a name replaces it (tests rely on it)."""
    if spec.name.startswith(TIMM_PREFIX):
        raise ValueError(f"{spec.name}: the {TIMM_PREFIX} prefix is reserved for timm models")
    _REGISTRY[spec.name] = spec
    return spec


def list_teachers() -> list[TeacherSpec]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_teacher_spec(name: str) -> TeacherSpec:
    if name.startswith(TIMM_PREFIX):
        return _timm_spec(name[len(TIMM_PREFIX) :])
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ProteusError(
            f"unknown teacher {name!r}; known teachers: {known}, or timm:<model> for any "
            "timm model (`proteus teachers` lists them with details)"
        )
    return _REGISTRY[name]


def build_teacher(
    name: str,
    *,
    image_size: int | None = None,
    layers: tuple[int, ...] = (),
    weights: Path | str | None = None,
    pretrained: bool = True,
    registers: bool = False,
) -> Teacher:
    """Build a frozen teacher by registry name.

    ``weights`` is a local file (safetensors or a torch state dict, loaded with
    ``weights_only=True``); without it the hub weights the record names are loaded, unless
    ``pretrained`` is False, which gives random init for tests and benchmarks.
    """
    spec = get_teacher_spec(name)
    request = TeacherBuild(
        image_size=image_size or spec.image_size,
        layers=tuple(layers),
        weights=Path(weights) if weights is not None else None,
        pretrained=pretrained,
        registers=registers,
    )
    return spec.build(request)


def _timm_spec(model_name: str) -> TeacherSpec:
    import timm

    if not model_name or not timm.is_model(model_name):
        raise ProteusError(
            f"unknown timm model {model_name!r} in timm:{model_name}; "
            "see timm.list_models() for the names timm knows"
        )
    return spec_from_timm(model_name)
