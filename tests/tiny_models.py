"""Tiny teachers registered through the same builders as the real ones.

Imported by tests/conftest.py, and by subprocesses through ``PROTEUS_PLUGINS=tiny_models``
with ``tests/`` on PYTHONPATH (the plugin mechanism users have for their own models).
"""

from __future__ import annotations

from proteus.common.models.teachers import TeacherSpec, register_teacher
from proteus.common.models.teachers.clip import build_clip
from proteus.common.models.teachers.spec import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from proteus.common.models.teachers.timm_teachers import build_file_only_vit, build_vit

TINY_VIT = {"embed_dim": 32, "depth": 3, "num_heads": 2}
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"width": 32, "layers": 3, "head_width": 16, "patch_size": 14},
}


def _register() -> None:
    for name, arch in (
        ("tiny_dinov2", "vit_small_patch14_dinov2"),
        ("tiny_dinov2_reg", "vit_small_patch14_reg4_dinov2"),
    ):
        register_teacher(
            TeacherSpec(
                name=name,
                family="dinov2",
                arch=arch,
                embed_dim=32,
                patch_size=14,
                depth=3,
                builder=build_vit,
                image_size=28,
                arch_kwargs=TINY_VIT,
                source="timm/" + arch,
            )
        )
    register_teacher(
        TeacherSpec(
            name="tiny_synclr",
            family="synclr",
            arch="vit_base_patch16_224",
            embed_dim=32,
            patch_size=16,
            depth=3,
            builder=build_file_only_vit,
            image_size=32,
            arch_kwargs=TINY_VIT,
            source="file only",
            strip_prefixes=("visual.",),
        )
    )
    register_teacher(
        TeacherSpec(
            name="tiny_clip",
            family="clip",
            arch="ViT-B-16-quickgelu",
            embed_dim=32,
            patch_size=14,
            depth=3,
            builder=build_clip,
            image_size=28,
            mean=OPENAI_CLIP_MEAN,
            std=OPENAI_CLIP_STD,
            arch_kwargs=TINY_CLIP,
            source="open_clip:ViT-B-16-quickgelu:openai",
            strip_prefixes=("visual.",),
        )
    )


_register()


def _register_students() -> None:
    from proteus.common.models.students import StudentSpec, register_student

    tiny = {"embed_dim": 32, "depth": 2, "num_heads": 2}
    register_student(
        StudentSpec("tiny_vit14", "vit_small_patch14_dinov2", 14, 32, tiny | {"init_values": 1e-5})
    )
    register_student(StudentSpec("tiny_vit16", "vit_small_patch16_224", 16, 32, tiny))
    # A different patch grid from the /14 teachers: targets must be resized to it.
    register_student(
        StudentSpec("tiny_vit7", "vit_small_patch16_224", 7, 32, tiny | {"patch_size": 7})
    )
    # timm's own test nets: a BatchNorm ResNet (stride 32, five stages) and a ConvNeXt.
    register_student(StudentSpec("tiny_resnet", "test_resnet", 32, 96, kind="convnet"))
    register_student(StudentSpec("tiny_convnext", "test_convnext", 32, 64, kind="convnet"))


_register_students()
