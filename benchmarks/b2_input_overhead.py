"""B2 input overhead: a training loop fed by the real cache vs the same loop fed by targets
already in memory (images pre-rendered in both), with one teacher's cache and with two aligned
caches (`train --cache A --cache B`: twice the target reads). Goal ≥ 0.95. Also: the DALI renderer's
views/s at 224 px next to a PIL/torchvision pipeline doing the same crop + resize + flip.

The student here is deliberately small (a 4-block ViT at 224 px) so that a step is short and
any input stall would show; a real student on a GPU is the same situation.

Also: the loop learning a PCA 64 int8 cache's coefficients directly (train/target_space.py)
against the same coefficients in memory (goal ≥ 0.95), and the bytes per second each codec
of DINOv2-g targets needs at 4,600 images/s (arithmetic).

    python benchmarks/b2_input_overhead.py [--steps 20] [--batch 32] [--coefficients-only]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import bench_vit, planned_reads, synthetic_cache, table, target_loop_speed, timed

from proteus.common.cache.reader import Cache


def loop_speed(caches: list[Cache], steps: int, batch: int, label: str, **options) -> list[dict]:
    """One teacher per cache (aligned caches share view ids): both loops train all heads."""
    return target_loop_speed(caches, bench_vit(14), 224, steps, batch, label=label, **options)


# What one H200 trains of ViT-S/14 at 40% of its bf16 peak (the arithmetic).
NODE_RATE = 4600


def coefficient_rows(root: Path, steps: int, batch: int) -> tuple[list[dict], str]:
    """A PCA 64 int8 cache learnt in coefficient space (no decode to teacher width) against
    the same coefficients held in memory, and the teacher-units loop on the same cache; and
    a line with the stored reads' own time."""
    shapes = {"cls": (384,), "patch": (256, 384)}
    pca = synthetic_cache(root / "pca", views=2048, per_view=shapes, dtype="int8", pca_k=64)
    rows = loop_speed([pca], steps, batch, "PCA 64 int8, coefficient space", coefficients=True)
    rows += loop_speed([pca], steps, batch, "PCA 64 int8, teacher units", baseline="decoded")
    # What the cache adds over memory in the first pair is the stored reads alone: their
    # own time says how much of any ratio below 1 can be theirs and how much is the machine's.
    rng = np.random.default_rng(0)
    plan = [rng.choice(pca.manifest.counts["views"], batch, replace=False) for _ in range(steps)]
    reads = timed(lambda: list(planned_reads([pca], ("cls", "patch"), plan, False)), repeats=3)
    step = 1 / rows[0]["steps/s"]
    line = (
        f"stored reads alone: {reads / steps * 1e3:.2f} ms a step, "
        f"{reads / steps / step:.2%} of the in-memory step's {step * 1e3:.0f} ms"
    )
    return rows, line


def print_coefficients(root: Path, args) -> None:
    coefficient, reads = coefficient_rows(root, args.steps, args.batch)
    print(f"\nB2  coefficient space, batch {args.batch}, 224 px, targets 257×384, PCA 64")
    print(table(coefficient, ["loop", "steps/s", "ratio"]))
    print(reads)
    # The bytes per second each target encoding needs at NODE_RATE images/s per GPU.
    print(f"\nB2  DINOv2-g targets needed at {NODE_RATE:,} images/s per GPU (arithmetic)")
    for name, per_view in _bytes_per_view().items():
        print(f"{name}: {per_view / 1e3:,.1f} kB a view, {per_view * NODE_RATE / 1e9:.3f} GB/s")


def _bytes_per_view() -> dict[str, int]:
    """DINOv2-g targets (cls + 256 patch tokens of 1536), as each codec stores them."""
    from proteus.common.cache.codec import TargetCodec

    out = {}
    codecs = [("float16", "float16", None), ("int8", "int8", None)]
    codecs += [(f"PCA {k} int8", "int8", k) for k in (256, 128, 64, 32)]
    for label, kind, k in codecs:
        patch = TargetCodec("patch", (256, 1536), kind, k).bytes_per_view()
        out[label] = patch + TargetCodec("cls", (1536,), "float16").bytes_per_view()
    return out


def render_speed(root: Path, views: int = 64) -> list[dict]:
    from PIL import Image

    from proteus.common.data.images import read_encoded
    from proteus.common.views.records import AugPolicy, sample_views
    from proteus.common.views.renderer import RenderConfig, Renderer

    rng = np.random.default_rng(0)
    paths = []
    for i in range(16):  # ImageNet-sized JPEGs
        pixels = rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)
        pixels = np.asarray(Image.fromarray(pixels).resize((125, 94)).resize((500, 375)))
        path = root / f"{i}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    policy = AugPolicy(jitter_prob=0, grayscale_prob=0, erase_prob=0)  # crop+resize+flip only
    records = sample_views(policy, 0, np.arange(16), np.array([[375, 500]] * 16), views // 16, 224)
    encoded = [read_encoded(paths[i], False) for i in records.image]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    renderer = Renderer(RenderConfig(224, mean, std, max_batch=views, threads=2))
    dali = views / timed(lambda: renderer.render(encoded, records), repeats=5)

    import torchvision.transforms.v2.functional as TF

    def pil():
        out = []
        for row in range(len(records)):
            y, x, h, w = records.crop[row].tolist()
            img = Image.open(paths[records.image[row]]).convert("RGB")
            t = TF.resized_crop(TF.pil_to_tensor(img), y, x, h, w, [224, 224], antialias=True)
            if records.flip[row]:
                t = TF.horizontal_flip(t)
            out.append(TF.normalize(t.float() / 255, mean, std))
        return torch.stack(out)

    torch_pil = views / timed(pil, repeats=3)
    return [
        {"pipeline": "PIL + torchvision (baseline)", "views/s": torch_pil, "ratio": 1.0},
        {
            "pipeline": "proteus DALI renderer (CPU, 2 threads)",
            "views/s": dali,
            "ratio": dali / torch_pil,
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--coefficients-only", action="store_true", help="only the coefficient-space part"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="proteus-b2-"))
    try:
        if args.coefficients_only:
            print_coefficients(root, args)
            return
        shapes = {"cls": (384,), "patch": (256, 384)}
        cache = synthetic_cache(root / "cache", views=2048, per_view=shapes)
        second = synthetic_cache(root / "cache2", views=2048, per_view=shapes)
        print(f"\nB2  training loop, batch {args.batch}, 224 px, targets 257×384 fp16")
        rows = loop_speed([cache], args.steps, args.batch, "one teacher")
        rows += loop_speed([cache, second], args.steps, args.batch, "two teachers, two caches")
        print(table(rows, ["loop", "steps/s", "ratio"]))
        print_coefficients(root, args)
        print("\nB2  rendering 64 views at 224 px (random-resized crop + flip) from 500×375 JPEGs")
        print(table(render_speed(root), ["pipeline", "views/s", "ratio"]))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
