"""B3 cache vs online teacher: steps/s of cached training vs training with the teacher run in
the loop, with a teacher of ≥ 10× the student's FLOPs. Prints the FLOP-predicted speed-up
beside the measured one; goal: measured ≥ 0.9 × predicted.

The same student step (two passes, three heads, AdamW) runs in both; the online variant
first runs the teacher forward on the batch, the cached one reads the targets from a cache.

    python benchmarks/b3_cache_vs_online.py [--teacher vit_large_patch14_dinov2]
        [--student-dim 512] [--student-depth 1] [--batch 8] [--steps 3]

On a CPU, narrow students run at a lower FLOP/s than a wide teacher, which the FLOP
prediction ignores; docs/PERFORMANCE.md reports three student widths.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import timm
import torch
from _common import synthetic_cache, table, timed
from torch.utils.flop_counter import FlopCounterMode

from proteus.common.models.parts import Lambdas
from proteus.common.models.students import StudentSpec, build_student, register_student
from proteus.common.runtime.prefetch import prefetch
from proteus.train.distiller import Distiller
from proteus.train.objective import Objective


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--teacher", default="vit_large_patch14_dinov2", help="timm name")
    parser.add_argument("--student-dim", type=int, default=512)
    parser.add_argument("--student-depth", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    # A shallow /14 student and a DINOv2-architecture teacher, both random init.
    dim, depth = args.student_dim, args.student_depth
    register_student(
        StudentSpec(
            "bench_student",
            "vit_small_patch14_dinov2",
            14,
            dim,
            {"embed_dim": dim, "depth": depth, "num_heads": dim // 64},
        )
    )
    teacher = timm.create_model(args.teacher, pretrained=False, img_size=224, num_classes=0).eval()
    t_dim = teacher.embed_dim
    model = Distiller(build_student("bench_student", 224), [(t_dim, Objective(Lambdas()), {})])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b = args.batch
    images = torch.randn(b, 3, 224, 224)
    masks = torch.zeros(b // 2, 256, dtype=torch.bool)
    masks[:, ::2] = True

    def student_step(t_cls, t_patch):
        parts = model(images, masks, [{"cls": t_cls, "patch": t_patch}])
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()

    def teacher_forward():
        with torch.no_grad():
            tokens = teacher.forward_features(images)
        return tokens[:, 0], tokens[:, 1:]

    f_student = flops(lambda: student_step(torch.zeros(b, t_dim), torch.zeros(b, 256, t_dim)))
    f_teacher = flops(teacher_forward)
    predicted = (f_student + f_teacher) / f_student

    root = Path(tempfile.mkdtemp(prefix="proteus-b3-"))
    try:
        cache = synthetic_cache(root / "cache", 512, {"cls": (t_dim,), "patch": (256, t_dim)})
        rng = np.random.default_rng(0)
        plan = [rng.choice(512, b, replace=False) for _ in range(args.steps)]

        def online():
            for _ in plan:
                student_step(*teacher_forward())

        def cached():
            reads = ({n: cache.read(n, ids) for n in ("cls", "patch")} for ids in plan)
            for t in prefetch(reads, depth=2):
                student_step(torch.from_numpy(t["cls"]), torch.from_numpy(t["patch"]))

        zeros = (torch.zeros(b, t_dim), torch.zeros(b, 256, t_dim))
        t_online = timed(online, repeats=3)
        t_cached = timed(cached, repeats=3)
        t_student = timed(lambda: [student_step(*zeros) for _ in plan], repeats=3)
        t_teacher = timed(lambda: [teacher_forward() for _ in plan], repeats=3)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    measured = t_online / t_cached
    print(f"\nB3  {depth}-block dim-{dim} student, teacher {args.teacher}; batch {b}, 224 px")
    print(
        f"    student {f_student / b / 1e9:.2f} GFLOP per image per "
        f"training step, teacher forward {f_teacher / b / 1e9:.2f} GFLOP per image "
        f"({f_teacher / f_student:.1f}× the student's step)"
    )
    rows = [
        {"training": "teacher in the loop (baseline)", "steps/s": args.steps / t_online},
        {"training": "targets from the cache", "steps/s": args.steps / t_cached},
        {"training": "(student step alone, targets in memory)", "steps/s": args.steps / t_student},
        {"training": "(teacher forward alone)", "steps/s": args.steps / t_teacher},
    ]
    print(table(rows, ["training", "steps/s"]))
    from_parts = (t_student + t_teacher) / t_student
    print(
        f"speed-up measured {measured:.2f}×, FLOP-predicted {predicted:.2f}×, "
        f"measured/predicted {measured / predicted:.2f} (goal ≥ 0.9)"
    )
    print(
        f"predicted from the timed parts (student step + teacher forward) {from_parts:.2f}×, "
        f"measured/that {measured / from_parts:.2f}; cached step / student step alone "
        f"{t_cached / t_student:.2f}"
    )


if __name__ == "__main__":
    main()
