"""B5 compression: bytes per view and fidelity (cosine, relative MSE) of float16, int8 with
per-token scales, and PCA-k (k for 99% of the variance, basis fitted on other views), on

  A. real teacher features: effnet_lite0 (ImageNet weights, offline) on scikit-image's
     photos, 48 recorded views each, rendered by the proteus renderer at 224 px;
  B. DINOv2-g-shaped tensors (257×1536): synthetic, with a decaying spectrum and a few
     high-norm outlier tokens, as large ViTs have (shape and structure only, not real);

and C. the student's agreement with the teacher on held-out views after the same short
training from a float16, an int8 and a PCA cache (digits, effnet_lite0, a 4-block ViT).

    python benchmarks/b5_compression.py [--steps 150] [--skip-training]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import bench_vit, table

from proteus.common.cache.codec import TargetCodec, components_for, fit_pca


def fidelity(x: torch.Tensor, fit_on: torch.Tensor, label: str) -> list[dict]:
    """Codecs applied to (V, N, D) tokens x; PCA basis fitted on other views ``fit_on``."""
    d = x.shape[-1]
    k = components_for(fit_on.reshape(-1, d), 0.99)
    basis, _ = fit_pca(fit_on.reshape(-1, d), k)
    shape = tuple(x.shape[1:])
    rows = []
    for name, codec in (
        ("float16", TargetCodec("patch", shape, "float16")),
        ("int8, scale per token", TargetCodec("patch", shape, "int8")),
        (f"PCA-{k} (99%), float16", TargetCodec("patch", shape, "float16", k)),
        (f"PCA-{k} (99%), int8", TargetCodec("patch", shape, "int8", k)),
    ):
        fitted = codec.fit(basis)
        y = fitted.decode(fitted.encode(x))
        cos = torch.nn.functional.cosine_similarity(y, x, dim=-1)
        rel = float(((y - x) ** 2).mean() / (x**2).mean())
        rows.append(
            {
                "data": label,
                "storage": name,
                "bytes/view": codec.bytes_per_view(),
                "vs fp32": codec.bytes_per_view() / (x[0].numel() * 4),
                "cos mean": float(cos.mean()),
                "cos min": float(cos.min()),
                "rel MSE": rel,
            }
        )
    return rows


def real_features(root: Path, views: int = 48) -> torch.Tensor:
    import skimage.data as data
    from PIL import Image

    from proteus.common.data.images import read_encoded
    from proteus.common.models.teachers import build_teacher
    from proteus.common.views.records import AugPolicy, sample_views
    from proteus.common.views.renderer import RenderConfig, Renderer

    names = [
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "cat",
    ]
    paths, sizes = [], []
    for name in names:
        pixels = getattr(data, name)()
        path = root / f"{name}.png"
        Image.fromarray(pixels).convert("RGB").save(path)
        paths.append(path)
        sizes.append(pixels.shape[:2])
    teacher = build_teacher("effnet_lite0")
    records = sample_views(AugPolicy(), 0, np.arange(len(paths)), np.array(sizes), views, 224)
    renderer = Renderer(RenderConfig(224, teacher.spec.mean, teacher.spec.std, max_batch=32))
    out = []
    for start in range(0, len(records), 32):
        part = records[np.arange(start, min(start + 32, len(records)))]
        encoded = [read_encoded(paths[i], False) for i in part.image]
        out.append(teacher(renderer.render(encoded, part))["patch"])
    return torch.cat(out)  # (views × photos, 49, 1280)


def dinov2_g_shaped(views: int = 96, tokens: int = 257, dim: int = 1536) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    spectrum = torch.exp(-torch.arange(dim) / 60.0)  # decaying, like real features
    basis = torch.linalg.qr(torch.randn(dim, dim, generator=g))[0]
    x = (torch.randn(views, tokens, dim, generator=g) * spectrum) @ basis.T
    x[:, [5, 77, 190]] *= 40  # high-norm outlier tokens
    return x


def agreement(root: Path, steps: int) -> list[dict]:
    from proteus.demo_pipeline import write_digits
    from proteus.evaluate.agreement import run_agreement
    from proteus.extract.config import ExtractConfig
    from proteus.extract.runner import run_extract
    from proteus.train.config import TrainConfig
    from proteus.train.runner import run_train

    bench_vit(16)
    write_digits(root / "digits", 64)
    common = {"teacher": "effnet_lite0", "image_size": 64, "device": "cpu", "progress": False}
    run_extract(
        ExtractConfig(data=root / "digits" / "val", out=root / "val", views=1, seed=9, **common)
    )
    rows = []
    for label, options in (
        ("float16", {}),
        ("int8", {"dtype": "int8"}),
        ("PCA-64, float16", {"pca": 64}),
    ):
        cache = root / f"cache-{len(rows)}"
        m = run_extract(
            ExtractConfig(data=root / "digits" / "train", out=cache, views=2, **common, **options)
        )
        run = root / f"run-{len(rows)}"
        run_train(
            TrainConfig(
                cache=cache,
                student="bench_vit16",
                out=run,
                max_steps=steps,
                batch_size=64,
                lr=3e-4,
                warmup_epochs=1,
                drop_path=0.0,
                grad_clip=1.0,
                device="cpu",
                progress=False,
                tensorboard=False,
            )
        )
        result = run_agreement(run, root / "val", device="cpu", progress=False)
        rows.append(
            {
                "training cache": label,
                "bytes/view": m.counts["target_bytes"] / m.counts["views"],
                **{k: result[k] for k in ("token_cosine", "fea_cosine", "patch_cosine")},
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="proteus-b5-"))
    columns = ["data", "storage", "bytes/view", "vs fp32", "cos mean", "cos min", "rel MSE"]
    try:
        with torch.no_grad():
            real = real_features(root)
            half = len(real) // 2
            rows = fidelity(real[half:], real[:half], "effnet_lite0 photos, 7×7×1280")
            synthetic = dinov2_g_shaped()
            rows += fidelity(synthetic[48:], synthetic[:48], "DINOv2-g-shaped, 257×1536")
        print(
            "\nB5  storage and fidelity against float32 teacher output (PCA fitted on other views)"
        )
        print(table(rows, columns))
        if not args.skip_training:
            print(
                f"\nB5  student agreement on held-out views after {args.steps} steps "
                "(digits, effnet_lite0 → 4-block ViT/16, 64 px)"
            )
            print(
                table(
                    agreement(root, args.steps),
                    ["training cache", "bytes/view", "token_cosine", "fea_cosine", "patch_cosine"],
                )
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
