"""B6 scale: memory stays flat as the cache grows, time grows linearly with views.

1. Peak memory (max RSS of a fresh process) of a training read loop over a cache 10×
   larger: the same steps touch the same number of views, so streaming reads keep it
   within 1.2× (a reader that loaded whole arrays would need 10×).
2. Extraction and one training epoch on 1×, 2× and 4× the images: seconds per view
   should stay constant (linear total time).

  python benchmarks/b6_scale.py [--views 1000] [--images 48]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import bench_vit, synthetic_cache, table
from PIL import Image

READ_LOOP = """
import resource, numpy as np, torch
from proteus.common.cache.reader import Cache
from proteus.common.runtime.prefetch import prefetch
cache = Cache({cache!r})
rng = np.random.default_rng(0)
views = cache.manifest.counts["views"]
plan = [rng.choice(views, 64, replace=False) for _ in range(40)]
reads = ({{n: cache.read_stored(n, ids) for n in ("cls", "patch")}} for ids in plan)
total = 0.0
for stored in prefetch(reads):
    t = cache.codec("patch").decode({{k: torch.from_numpy(v) for k, v in stored["patch"].items()}})
    total += float(t.mean())
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
anon_kb = int(status["RssAnon"].split()[0])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, anon_kb)
"""


def peak_rss(cache: Path) -> tuple[int, int]:
    """Peak resident set (incl. mapped file pages) and private (anonymous) memory, bytes."""
    code = READ_LOOP.format(cache=str(cache))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak, anon = out.stdout.strip().splitlines()[-1].split()
    return int(peak) * 1024, int(anon) * 1024  # KiB on Linux


def memory(root: Path, views: int) -> list[dict]:
    rows = []
    for scale in (1, 10):
        cache = root / f"mem{scale}"
        synthetic_cache(cache, views * scale, {"cls": (384,), "patch": (256, 384)})
        size = sum(p.stat().st_size for p in (cache / "targets").rglob("*") if p.is_file())
        peak, anon = peak_rss(cache)
        rows.append(
            {
                "cache": f"{scale}× ({views * scale} views)",
                "targets MB": size / 1e6,
                "peak RSS MB": peak / 1e6,
                "private MB": anon / 1e6,
            }
        )
        shutil.rmtree(cache)
    for row in rows:
        row["RSS ratio"] = row["peak RSS MB"] / rows[0]["peak RSS MB"]
        row["private ratio"] = row["private MB"] / rows[0]["private MB"]
    return rows


def linearity(root: Path, images: int) -> list[dict]:
    from proteus.extract.config import ExtractConfig
    from proteus.extract.runner import run_extract
    from proteus.train.config import TrainConfig
    from proteus.train.runner import run_train

    bench_vit(16)
    rng = np.random.default_rng(0)
    rows = []
    for scale in (1, 2, 4):
        data = root / f"data{scale}"
        data.mkdir()
        for i in range(images * scale):
            small = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
            Image.fromarray(small).resize((256, 192)).save(data / f"{i:05d}.jpg")
        start = time.perf_counter()
        m = run_extract(
            ExtractConfig(
                teacher="timm:vit_small_patch16_224",
                data=data,
                out=root / f"cache{scale}",
                views=2,
                image_size=96,
                pretrained=False,
                device="cpu",
                progress=False,
            )
        )
        extract_s = time.perf_counter() - start
        start = time.perf_counter()
        run_train(
            TrainConfig(
                cache=root / f"cache{scale}",
                student="bench_vit16",
                out=root / f"run{scale}",
                epochs=1,
                batch_size=16,
                device="cpu",
                progress=False,
                tensorboard=False,
            )
        )
        train_s = time.perf_counter() - start
        views = m.counts["views"]
        rows.append(
            {
                "images": images * scale,
                "views": views,
                "extract s": extract_s,
                "extract ms/view": 1000 * extract_s / views,
                "train epoch s": train_s,
                "train ms/image": 1000 * train_s / (images * scale),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=1000)
    parser.add_argument("--images", type=int, default=48)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="proteus-b6-"))
    try:
        print("\nB6  peak memory of a 40-step read loop (batches of 64, 257×384 fp16 targets)")
        print(
            table(
                memory(root, args.views),
                ["cache", "targets MB", "peak RSS MB", "RSS ratio", "private MB", "private ratio"],
            )
        )
        print("\nB6  time against data size (ViT-S/16 teacher at 96 px, K=2; 4-block student)")
        print(
            table(
                linearity(root, args.images),
                [
                    "images",
                    "views",
                    "extract s",
                    "extract ms/view",
                    "train epoch s",
                    "train ms/image",
                ],
            )
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
