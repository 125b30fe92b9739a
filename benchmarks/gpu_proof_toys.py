"""The toy teacher and student of ``gpu_proof.py --cpu-rehearsal``: the shapes of the real run
(a ViT-g/14-architecture teacher, a /14 student) at a width a CPU runs in seconds.

A ``PROTEUS_PLUGINS`` module, so the ``proteus train`` processes the proof starts (torchrun
ranks included) know them as well as the proof itself does.
"""

from __future__ import annotations

from proteus.common.models.students import StudentSpec, register_student
from proteus.common.models.teachers import TeacherSpec, register_teacher
from proteus.common.models.teachers.timm_teachers import build_vit

TOY = {"embed_dim": 96, "depth": 2, "num_heads": 2}  # 96: SwiGLU needs an even hidden width
TEACHER, STUDENT = "proof_toy_g14", "proof_toy_s14"

register_teacher(
    TeacherSpec(
        name=TEACHER,
        family="dinov2",
        arch="vit_giant_patch14_dinov2",
        embed_dim=TOY["embed_dim"],
        patch_size=14,
        depth=TOY["depth"],
        builder=build_vit,
        image_size=56,
        arch_kwargs=TOY,
        source="random init only",
    )
)
register_student(StudentSpec(STUDENT, "vit_small_patch14_dinov2", 14, TOY["embed_dim"], TOY))
