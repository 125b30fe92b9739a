"""B7 convnet students: a training step of CNN students against a ViT student of similar FLOPs.

Every row is the same Proteus step (clean pass, masked pass over half the batch, token,
feature and patch heads, AdamW) towards a /14 teacher's targets (16×16 grid, width 768) at
224 px, with targets in memory. The ViT named by --baseline is the baseline; each row prints
its FLOPs per image per step (3 × the forward passes' FLOPs), images/s, and both relative to
the baseline (time ratio and achieved FLOP/s ratio).

    python benchmarks/b7_convnet_student.py [--students vit_s14,resnet50,convnext_t]
        [--baseline vit_s14] [--batch 8] [--steps 2]
"""

from __future__ import annotations

import argparse

import torch
from _common import table, timed
from torch.utils.flop_counter import FlopCounterMode

from proteus.common.models.parts import Lambdas
from proteus.common.models.students import build_student
from proteus.train.distiller import Distiller
from proteus.train.objective import Objective

GRID, T_DIM, SIZE = (16, 16), 768, 224


def step_fn(name: str, batch: int):
    torch.manual_seed(0)
    model = Distiller(build_student(name, SIZE, grid=GRID), [(T_DIM, Objective(Lambdas()), {})])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rows, cols = model.student.grid  # a /16 ViT's own 14×14 (targets are resized to it)
    tokens = rows * cols
    images = torch.randn(batch, 3, SIZE, SIZE)
    masks = torch.zeros(batch // 2, tokens, dtype=torch.bool)
    masks[:, ::2] = True
    targets = [{"cls": torch.randn(batch, T_DIM), "patch": torch.randn(batch, tokens, T_DIM)}]

    def step() -> None:
        parts = model(images, masks, targets)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()

    def forward() -> None:
        with torch.no_grad():
            model(images, masks, targets)

    return step, forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", default="vit_s14,resnet50,convnext_t")
    parser.add_argument("--baseline", default="vit_s14")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    names = args.students.split(",")
    if args.baseline not in names:
        names.insert(0, args.baseline)
    measured = {}
    for name in names:
        step, forward = step_fn(name, args.batch)
        # Forward FLOPs × 3 for the step: torch's FlopCounter ignores groups in the backward
        # of grouped convolutions (ConvNeXt's and EfficientNet's depthwise ones), so counting
        # the backward would credit them with several times their real work.
        with FlopCounterMode(display=False) as counter:
            forward()
        seconds = timed(lambda s=step: [s() for _ in range(args.steps)], repeats=args.repeats)
        measured[name] = (3 * counter.get_total_flops() / args.batch, seconds / args.steps)
    base_flops, base_time = measured[args.baseline]
    rows = []
    for name, (flops, seconds) in measured.items():
        rows.append(
            {
                "student": name + (" (baseline)" if name == args.baseline else ""),
                "GFLOP/img/step": flops / 1e9,
                "img/s": args.batch / seconds,
                "FLOPs vs base": flops / base_flops,
                "time vs base": seconds / base_time,
                "FLOP/s vs base": (flops / seconds) / (base_flops / base_time),
            }
        )
    print(f"\nB7  Proteus step, batch {args.batch}, {SIZE} px, targets {GRID} × {T_DIM}")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
