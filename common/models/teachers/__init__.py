"""Teachers: a registry of frozen feature extractors with one output contract.

>>> from proteus.common.models.teachers import build_teacher
>>> teacher = build_teacher("dinov2_g", image_size=224, layers=(19, 39))
>>> out = teacher.forward_features(images)  # {"cls": (B, D), "patch": (B, N, D), "layers": {...}}
"""

from proteus.common.models.teachers import catalog as _catalog  # noqa: F401  (registers the entries)
from proteus.common.models.teachers.base import Teacher, resolve_layers
from proteus.common.models.teachers.registry import (
    build_teacher,
    get_teacher_spec,
    list_teachers,
    register_teacher,
)
from proteus.common.models.teachers.spec import TeacherBuild, TeacherOutput, TeacherSpec

__all__ = [
    "Teacher",
    "TeacherBuild",
    "TeacherOutput",
    "TeacherSpec",
    "build_teacher",
    "get_teacher_spec",
    "list_teachers",
    "register_teacher",
    "resolve_layers",
]
