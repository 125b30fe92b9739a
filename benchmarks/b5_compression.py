"""B5 compression: bytes per view and fidelity (cosine, relative MSE) of float16, int8 with
per-token scales, PCA-k (k for 99% of the variance) and PCA-k int8 for k in 32…256, with and
without the rotation int8 coefficients are stored with (basis fitted on other views), on

  A. real teacher features: effnet_lite0 (ImageNet weights, offline) on scikit-image's
     photos, 48 recorded views each, rendered by the proteus renderer at 224 px;
  B. DINOv2-g-shaped tensors (257×1536): synthetic, with a decaying spectrum and a few
     high-norm outlier tokens, as large ViTs have (shape and structure only, not real);

and C. the student's agreement with the teacher on held-out views after the same short
training from a float16, an int8, a PCA and a rotated PCA-64 int8 cache learnt in coefficient
space (digits, effnet_lite0, a 4-block ViT). The students' kNN / linear from PCA-64 int8
against float16 on skimage are `benchmarks/quality.py --data skimage --rows "cache K=16,cache
K=16 PCA int8"` (docs/QUALITY.md).

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

from proteus.common.cache.codec import TargetCodec, components_for, fit_pca, rotated

PCA_KS = (32, 64, 128, 256)


def fidelity(x: torch.Tensor, fit_on: torch.Tensor, label: str) -> list[dict]:
    """Codecs applied to (V, N, D) tokens x; PCA bases fitted on other views ``fit_on``: k
    for 99% of the variance, and k ∈ PCA_KS as int8 with and without the rotation
    (codec.rotated) that extraction applies to int8 coefficients."""
    d = x.shape[-1]
    flat = fit_on.reshape(-1, d)
    k99 = components_for(flat, 0.99)
    shape = tuple(x.shape[1:])
    codecs = [
        ("float16", TargetCodec("patch", shape, "float16"), None),
        ("int8, scale per token", TargetCodec("patch", shape, "int8"), None),
        (f"PCA-{k99} (99%), float16", TargetCodec("patch", shape, "float16", k99), False),
    ]
    for k in PCA_KS:
        if k < d:
            codecs.append((f"PCA-{k}, int8", TargetCodec("patch", shape, "int8", k), False))
            codecs.append((f"PCA-{k}, int8 rotated", TargetCodec("patch", shape, "int8", k), True))
    fp16 = codecs[0][1].bytes_per_view()
    bases: dict[int, object] = {}
    rows = []
    for name, codec, rotate in codecs:
        fitted = codec
        if codec.pca_k:
            if codec.pca_k not in bases:
                bases[codec.pca_k] = fit_pca(flat, codec.pca_k)[0]
            basis = bases[codec.pca_k]
            fitted = codec.fit(rotated(basis, seed=0)[0] if rotate else basis)
        y = fitted.decode(fitted.encode(x))
        cos = torch.nn.functional.cosine_similarity(y, x, dim=-1).flatten()
        rel = float(((y - x) ** 2).mean() / (x**2).mean())
        rows.append(
            {
                "data": label,
                "storage": name,
                "bytes/view": codec.bytes_per_view(),
                "vs fp16": codec.bytes_per_view() / fp16,
                "cos mean": float(cos.mean()),
                "cos p1": float(torch.quantile(cos.double(), 0.01)),
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
        ("PCA-64, int8 rotated, coefficient space", {"pca": 64, "dtype": "int8"}),
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
    columns = ["data", "storage", "bytes/view", "vs fp16", "cos mean", "cos p1", "rel MSE"]
    try:
        with torch.no_grad():
            real = real_features(root)
            half = len(real) // 2
            rows = fidelity(real[half:], real[:half], "effnet_lite0 photos, 7×7×1280")
            synthetic = dinov2_g_shaped()
            rows += fidelity(synthetic[48:], synthetic[:48], "DINOv2-g-shaped, 257×1536")
        print(
            "\nB5  storage and fidelity against float32 teacher output (PCA fitted on other "
            "views; cos p1: the 1st percentile of the tokens' cosines)"
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
