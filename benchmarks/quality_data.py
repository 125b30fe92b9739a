"""Labelled real images that install offline, for benchmarks/quality.py.

- ``digits``: scikit-learn's 1,797 handwritten digit scans (8×8, 10 classes), upscaled; the
  same split as the demo.
- ``skimage``: the photographs and texture plates scikit-image ships (brick, grass, gravel,
  coffee, the cat, the astronaut, a retina, a micrograph, …), one class per photograph.
  Patches of 12–40% of the short side are cut at random places, resized to the output size;
  train patches come from the left 60% of each photograph and test patches from the right
  40%, so no test pixel was ever seen in training.

Fashion-MNIST is deliberately not here: it is kept apart as an independent check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
    "text",
)


def write_dataset(name: str, root: Path, size: int = 64) -> tuple[Path, Path]:
    """``root/train`` and ``root/test`` ImageFolder trees (written once, then reused)."""
    train, test = root / "train", root / "test"
    if not (root / ".done").exists():
        if name == "digits":
            from proteus.demo_pipeline import write_digits

            write_digits(root, size)
            (root / "val").rename(test)
        elif name == "skimage":
            _write_skimage(root, size)
        else:
            raise SystemExit(f"unknown data set {name!r}: digits or skimage")
        (root / ".done").touch()
    return train, test


def _write_skimage(root: Path, size: int, train_per_class: int = 200, test_per_class: int = 60):
    from skimage import data

    rng = np.random.default_rng(0)
    for label, photo in enumerate(SKIMAGE_PHOTOS):
        image = getattr(data, photo)()
        if image.ndim == 2:
            image = np.stack([image] * 3, -1)
        image = image[..., :3].astype(np.uint8)
        h, w = image.shape[:2]
        split = int(w * 0.6)
        for part, count, (x0, x1) in (
            ("train", train_per_class, (0, split)),
            ("test", test_per_class, (split, w)),
        ):
            folder = root / part / f"{label:02d}_{photo}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                side = int(min(h, x1 - x0) * rng.uniform(0.12, 0.4))
                y = int(rng.integers(0, h - side + 1))
                x = int(rng.integers(x0, x1 - side + 1))
                patch = Image.fromarray(image[y : y + side, x : x + side])
                patch.resize((size, size), Image.BICUBIC).save(folder / f"{i:04d}.png")
