"""Students: timm backbones behind the same output contract as teachers.

``registry`` holds the records and styles, ``base`` the contract, ``vit`` and ``convnet`` the
two kinds, ``build`` puts them together.
"""

from proteus.common.models.students.base import Student
from proteus.common.models.students.build import build_student, set_norm_eps
from proteus.common.models.students.convnet import ConvStudent
from proteus.common.models.students.registry import (
    KINDS,
    STUDENT_STYLES,
    TIMM_PREFIX,
    StudentSpec,
    StudentStyle,
    get_student_spec,
    list_students,
    register_student,
    student_style,
)
from proteus.common.models.students.vit import ViTStudent

__all__ = [
    "KINDS",
    "STUDENT_STYLES",
    "TIMM_PREFIX",
    "ConvStudent",
    "Student",
    "StudentSpec",
    "StudentStyle",
    "ViTStudent",
    "build_student",
    "get_student_spec",
    "list_students",
    "register_student",
    "set_norm_eps",
    "student_style",
]
