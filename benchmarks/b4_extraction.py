"""B4 extraction: views/s of `proteus extract` (probe, render, teacher, encode, write) vs the
teacher's forward alone on in-memory batches of the same size. Goal ≥ 0.85 with a teacher
large enough to dominate, as real teachers do (here a random-init ViT-B/16 at 224 px).

    python benchmarks/b4_extraction.py [--images 48] [--views 2] [--teacher timm:<model>]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import table, timed
from PIL import Image

from proteus.common.models.teachers import build_teacher
from proteus.extract.config import ExtractConfig
from proteus.extract.runner import run_extract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--teacher", default="timm:vit_base_patch16_224")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="proteus-b4-"))
    try:
        rng = np.random.default_rng(0)
        for i in range(args.images):
            small = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
            Image.fromarray(small).resize((500, 375)).save(root / f"{i:04d}.jpg", quality=90)
        teacher = build_teacher(args.teacher, pretrained=False)
        size = teacher.image_size
        batch = torch.randn(args.batch, 3, size, size)
        n_views = args.images * args.views
        per_batch = timed(lambda: teacher(batch), repeats=3)
        alone = args.batch / per_batch
        cfg = ExtractConfig(
            teacher=args.teacher,
            data=root,
            out=root / "cache",
            views=args.views,
            batch_size=args.batch,
            pretrained=False,
            device="cpu",
            progress=False,
            render_threads=2,
        )
        start = time.perf_counter()
        run_extract(cfg)
        whole = n_views / (time.perf_counter() - start)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\nB4  {args.teacher} (random init) at {size} px, {n_views} views of "
        f"{args.images} 500×375 JPEGs, batches of {args.batch}"
    )
    rows = [
        {"what": "teacher forward alone, in memory (baseline)", "views/s": alone, "ratio": 1.0},
        {"what": "proteus extract, end to end", "views/s": whole, "ratio": whole / alone},
    ]
    print(table(rows, ["what", "views/s", "ratio"]))


if __name__ == "__main__":
    main()
