"""Dense-task data sets made from real pixels that install offline, for benchmarks/dense.py.

Both are built from the photographs and texture plates scikit-image ships; train images take
their pixels from the left half of each plate and test images from the right half, so no test
pixel was ever seen in training (nor by the distilled student).

- ``seg``: texture mosaics. A random Voronoi partition of the square into 2–5 regions, each
  region filled with a random crop of a different plate; the label map is the plate's index,
  known by construction. The generic layout of ``proteus eval seg``: ``seg/{train,val}/images``
  and ``seg/{train,val}/labels`` (8-bit PNG class maps with matching names), 10 classes.
- ``depth``: a plate laid on a ground plane and another on a wall behind it, seen by a pinhole
  camera at a random height, pitch and wall distance; the depth of every pixel is the distance
  along the optical axis, known per pixel. The generic layout of ``proteus eval depth``:
  ``depth/{train,val}/images`` and ``depth/{train,val}/depth`` (16-bit PNG, millimetres).

``distil/`` holds the train images of both (what the student is distilled on).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PLATES = (
    "brick",
    "grass",
    "gravel",
    "moon",
    "coins",
    "retina",
    "hubble_deep_field",
    "immunohistochemistry",
    "cell",
    "coffee",
)
MAX_DEPTH = 10.0  # metres, as NYU-Depth v2's probe bins


def write_dense_sets(root: Path, size: int = 128, train: int = 400, val: int = 100) -> Path:
    """Write ``root/{seg,depth,distil}`` once (``root/.done`` marks a finished set)."""
    if (root / ".done").exists():
        return root
    plates = _plates()
    for split, count, half in (("train", train, 0), ("val", val, 1)):
        rng = np.random.default_rng(np.random.SeedSequence([7, half]))
        halves = [_half(p, half) for p in plates]
        _write_seg(root / "seg" / split, halves, count, size, rng)
        _write_depth(root / "depth" / split, halves, count, size, rng)
    distil = root / "distil"
    distil.mkdir(parents=True, exist_ok=True)
    for task in ("seg", "depth"):
        for path in sorted((root / task / "train" / "images").glob("*.png")):
            (distil / f"{task}_{path.name}").write_bytes(path.read_bytes())
    (root / ".done").touch()
    return root


def _plates() -> list[np.ndarray]:
    from skimage import data

    out = []
    for name in PLATES:
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, -1)
        out.append(np.ascontiguousarray(image[..., :3]).astype(np.uint8))
    return out


def _half(plate: np.ndarray, half: int) -> np.ndarray:
    w = plate.shape[1] // 2
    return plate[:, :w] if half == 0 else plate[:, w:]


def _crop(plate: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of 40–90% of the plate half's short side, resized to ``size``."""
    h, w = plate.shape[:2]
    side = int(min(h, w) * rng.uniform(0.4, 0.9))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    patch = Image.fromarray(plate[y : y + side, x : x + side])
    return np.asarray(patch.resize((size, size), Image.BICUBIC))


def _write_seg(folder: Path, plates, count: int, size: int, rng: np.random.Generator) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(count):
        regions = int(rng.integers(2, 6))
        seeds = rng.uniform(0, size, (regions, 2))
        distance = (yy[None] - seeds[:, 0, None, None]) ** 2 + (
            xx[None] - seeds[:, 1, None, None]
        ) ** 2
        cell = distance.argmin(0)
        classes = rng.choice(len(plates), regions, replace=False)
        label = classes[cell].astype(np.uint8)
        image = np.zeros((size, size, 3), np.uint8)
        for k, c in enumerate(classes):
            image[cell == k] = _crop(plates[c], size, rng)[cell == k]
        Image.fromarray(image).save(folder / "images" / f"{i:04d}.png")
        Image.fromarray(label).save(folder / "labels" / f"{i:04d}.png")


def _write_depth(folder: Path, plates, count: int, size: int, rng: np.random.Generator) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "depth").mkdir(parents=True, exist_ok=True)
    focal = size / (2 * np.tan(np.radians(30)))  # a 60° field of view
    v, u = np.mgrid[0:size, 0:size] + 0.5
    for i in range(count):
        height = rng.uniform(1.0, 2.0)
        pitch = np.radians(rng.uniform(10, 35))
        wall = rng.uniform(5.0, 9.5)
        floor_scale, wall_scale = (
            rng.uniform(1.0, 4.0),
            rng.uniform(2.0, 6.0),
        )  # metres per plate width
        ground, back = rng.choice(len(plates), 2, replace=False)
        # Camera rays (x right, y down, z forward), tilted down by the pitch.
        x = (u - size / 2) / focal
        y = (v - size / 2) / focal
        cos, sin = np.cos(pitch), np.sin(pitch)
        dy, dz = y * cos + sin, -y * sin + cos  # world: y down, z forward
        t_floor = np.where(dy > 1e-6, height / np.maximum(dy, 1e-6), np.inf)
        t_wall = np.where(dz > 1e-6, wall / np.maximum(dz, 1e-6), np.inf)
        on_floor = t_floor < t_wall
        t = np.minimum(t_floor, t_wall)
        world_x, world_y, world_z = x * t, dy * t, dz * t
        # A pixel's footprint in metres: t / focal across, stretched by 1 / sin(grazing angle)
        # on the floor.
        across = t / focal
        floor_span = across * np.sqrt(x**2 + dy**2 + dz**2) / np.maximum(dy, 1e-3)
        image = np.where(
            on_floor[..., None],
            _sample(plates[ground], world_x, world_z, floor_scale, np.minimum(floor_span, 1e3)),
            _sample(plates[back], world_x, world_y - height, wall_scale, across),
        )
        # t is the depth along the optical axis: each ray's camera z is 1.
        millimetres = np.clip(np.round(np.minimum(t, MAX_DEPTH) * 1000), 1, 65535)
        Image.fromarray(image.astype(np.uint8)).save(folder / "images" / f"{i:04d}.png")
        Image.fromarray(millimetres.astype(np.uint16)).save(folder / "depth" / f"{i:04d}.png")


def _sample(
    plate: np.ndarray, a: np.ndarray, b: np.ndarray, scale: float, metres_per_pixel: np.ndarray
) -> np.ndarray:
    """The plate tiled over the plane (metres ``a``, ``b``), ``scale`` metres per plate width,
    each pixel read from the level of a mip pyramid whose texels are about its footprint
    (nearest texels of the full plate alias to noise in the distance)."""
    levels = [plate]
    for _ in range(4):
        h, w = levels[-1].shape[:2]
        levels.append(np.asarray(Image.fromarray(levels[-1]).resize((w // 2, h // 2), Image.BOX)))
    texels = metres_per_pixel / scale * plate.shape[1]
    level = np.clip(np.floor(np.log2(np.maximum(texels, 1.0))), 0, len(levels) - 1).astype(int)
    out = np.zeros((*a.shape, 3), np.uint8)
    for k, image in enumerate(levels):
        h, w = image.shape[:2]
        at = level == k
        col = np.mod(np.floor(a[at] / scale * w), w).astype(np.int64)
        row = np.mod(np.floor(b[at] / scale * w), h).astype(np.int64)
        out[at] = image[row, col]
    return out
