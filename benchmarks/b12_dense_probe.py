"""B12: does a dense probe keep the frozen model busy? Images/s of `eval seg`'s training
iterations (reading, augmenting, the model's forward, the head's step) against the same
model's forward alone on batches already in memory, same batch and threads, in one run.
Goal: ≥ 0.8.

    python benchmarks/b12_dense_probe.py [--student vit_ti16] [--size 128] [--iterations 40]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from dense_data import write_dense_sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="vit_ti16")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data", type=Path, default=None, help="[default: a temporary folder]")
    args = parser.parse_args()

    import torch

    from proteus.evaluate.config import DenseConfig, SourceConfig
    from proteus.evaluate.dense_heads import SegHead, seg_loss
    from proteus.evaluate.dense_probe import SEG, _Probe, _SegSamples
    from proteus.evaluate.dense_sets import find_seg

    root = args.data or Path(tempfile.mkdtemp()) / "dense"
    write_dense_sets(root, args.size, train=100, val=10)
    cfg = DenseConfig(
        SourceConfig(student=args.student, random_init=True, image_size=args.size),
        root / "seg",
        classes=10,
        iterations=args.iterations,
        batch_size=args.batch_size,
        device="cpu",
        progress=False,
    )
    probe = _Probe(cfg, SEG, None)
    split = find_seg(cfg.data, "train", classes=10, ignore_index=255)
    head = SegHead(probe.channels(lambda m, c: m.shape[1]), 10)

    def loss(pixels, target, iteration):
        maps = [m for m, _ in probe.source.dense(pixels, 1)]
        return seg_loss(head(maps, target.shape[-2:]), target, 255)

    x = torch.randn(args.batch_size, 3, args.size, args.size)
    probe.source.dense(x)  # warm-up
    started = time.perf_counter()
    for _ in range(args.iterations):
        probe.source.dense(x)
    forward = args.iterations * args.batch_size / (time.perf_counter() - started)
    started = time.perf_counter()
    probe.fit(head, _SegSamples(split, probe.crop), loss)
    probe_speed = args.iterations * args.batch_size / (time.perf_counter() - started)
    print(
        f"| {args.student} {args.size} px, batch {args.batch_size} | forward alone "
        f"{forward:.1f} img/s | eval seg training {probe_speed:.1f} img/s | "
        f"ratio {probe_speed / forward:.2f} |"
    )


if __name__ == "__main__":
    main()
