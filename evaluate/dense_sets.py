"""Dense data sets on disk: image + label-map pairs (segmentation) and image + depth-map pairs.

Layouts (``find_seg`` / ``find_depth`` choose by what the folder holds):

- **ADE20K as released** (``ADEChallengeData2016``): ``images/{training,validation}/*.jpg`` and
  ``annotations/{training,validation}/*.png`` class maps where 0 is "other" and 1–150 the
  classes. As DINOv2 (mmseg's ``reduce_zero_label``) reads it: 0 becomes the ignore index and
  class k becomes k − 1 (150 classes).
- **NYU-Depth v2 as DINOv2 reads it** (the BTS split files): ``nyu_train.txt`` and
  ``nyu_test.txt`` whose lines are ``RGB-PATH DEPTH-PATH [FOCAL]`` relative to the folder;
  depth maps are 16-bit PNGs in millimetres; evaluation keeps the Eigen crop (rows 45–471,
  columns 41–601 of 480 × 640 maps).
- **Generic**: ``{train,val}/images`` with ``{train,val}/labels`` (8-bit or 16-bit class maps,
  ``--classes N``, ``--ignore-index``) or ``{train,val}/depth`` (16-bit PNGs, ``--depth-scale``
  units per metre), matching file names (the suffix aside).

Nothing is loaded when a set is found, only each file's header (size, mode) so a bad pair fails
before any training; the values are checked as each pair is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from proteus.common.data.dataset import IMAGE_SUFFIXES
from proteus.common.runtime.errors import ProteusError

ADE20K_CLASSES = 150
EIGEN_CROP = (45, 471, 41, 601)  # rows and columns NYU's evaluation keeps, on 480 × 640
NYU_SHAPE = (480, 640)


@dataclass(frozen=True)
class PairSet:
    """One split: images and their label (or depth) maps, in matching order."""

    name: str  # for messages: "--data ROOT (val)"
    images: tuple[Path, ...]
    targets: tuple[Path, ...]
    layout: str  # "ade20k", "nyu" or "generic"

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8."""
        return _read(self.images[i], "RGB")


@dataclass(frozen=True)
class SegSet(PairSet):
    classes: int = 0
    ignore_index: int = 255
    reduce_zero_label: bool = False  # ADE20K: 0 is "other", ignored

    def label(self, i: int) -> np.ndarray:
        """(H, W) int64 class ids in 0 … classes − 1, or the ignore index."""
        path = self.targets[i]
        with Image.open(path) as opened:
            raw = np.asarray(opened).astype(np.int64)
        if raw.ndim != 2:
            raise ProteusError(
                f"{path}: a label map must have one channel (class ids), not {raw.shape[2]}"
            )
        if self.reduce_zero_label:
            raw = np.where(raw == 0, self.ignore_index, raw - 1)
        bad = (raw >= self.classes) & (raw != self.ignore_index)
        if bad.any():
            raise ProteusError(
                f"{path}: holds class {int(raw[bad].max())}, outside the {self.classes} classes "
                f"(0 … {self.classes - 1}; {self.ignore_index} is ignored): check --classes"
            )
        return raw


@dataclass(frozen=True)
class DepthSet(PairSet):
    depth_scale: float = 1000.0  # stored units per metre (NYU: millimetres)
    min_depth: float = 1e-3
    max_depth: float = 10.0
    eigen_crop: bool = False

    def depth(self, i: int) -> np.ndarray:
        """(H, W) float32 metres; 0 where there is no valid measurement."""
        with Image.open(self.targets[i]) as opened:
            raw = np.asarray(opened).astype(np.float32)
        depth = raw / self.depth_scale
        return np.where((depth > self.min_depth) & (depth <= self.max_depth), depth, 0.0)

    def eval_mask(self, shape: tuple[int, int]) -> np.ndarray | None:
        """The evaluation crop of a map of this shape (NYU's Eigen crop on 480 × 640), if any."""
        if not self.eigen_crop or tuple(shape) != NYU_SHAPE:
            return None
        mask = np.zeros(shape, bool)
        top, bottom, left, right = EIGEN_CROP
        mask[top:bottom, left:right] = True
        return mask


def find_seg(root: Path, split: str, *, classes: int | None, ignore_index: int) -> SegSet:
    """``split``: "train" or "val"."""
    root = Path(root)
    ade = root / "images" / ("training" if split == "train" else "validation")
    if ade.is_dir() and (root / "annotations").is_dir():
        annotations = root / "annotations" / ade.name
        images, labels = _pairs(ade, annotations, f"--data {root} ({ade.name})")
        found = SegSet(
            f"--data {root} ({ade.name})",
            images,
            labels,
            "ade20k",
            classes=classes or ADE20K_CLASSES,
            ignore_index=ignore_index,
            reduce_zero_label=True,
        )
    else:
        folder = _generic_split(root, split)
        if classes is None:
            raise ProteusError(
                f"--data {root}: a generic layout ({folder}/images + labels) needs --classes N"
            )
        images, labels = _pairs(folder / "images", folder / "labels", f"--data {root} ({split})")
        found = SegSet(
            f"--data {root} ({split})",
            images,
            labels,
            "generic",
            classes=classes,
            ignore_index=ignore_index,
        )
    for image, label in zip(found.images, found.targets, strict=True):
        _same_size(image, label)
    return found


def find_depth(
    root: Path,
    split: str,
    *,
    depth_scale: float | None,
    min_depth: float,
    max_depth: float,
) -> DepthSet:
    root = Path(root)
    listing = root / ("nyu_train.txt" if split == "train" else "nyu_test.txt")
    if listing.is_file():
        images, depths = _listed(root, listing)
        found = DepthSet(
            f"--data {root} ({listing.name})",
            images,
            depths,
            "nyu",
            depth_scale=depth_scale or 1000.0,
            min_depth=min_depth,
            max_depth=max_depth,
            eigen_crop=True,
        )
    else:
        folder = _generic_split(root, split, nyu=True)
        images, depths = _pairs(folder / "images", folder / "depth", f"--data {root} ({split})")
        found = DepthSet(
            f"--data {root} ({split})",
            images,
            depths,
            "generic",
            depth_scale=depth_scale or 1000.0,
            min_depth=min_depth,
            max_depth=max_depth,
        )
    for image, depth in zip(found.images, found.targets, strict=True):
        _same_size(image, depth)
        with Image.open(depth) as opened:
            if opened.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise ProteusError(
                    f"{depth}: a depth map must be a 16-bit PNG (mode I;16), not mode "
                    f"{opened.mode}: store depth × --depth-scale as 16-bit integers"
                )
    return found


def _generic_split(root: Path, split: str, nyu: bool = False) -> Path:
    folder = root / split
    if not folder.is_dir():
        alt = "nyu_train.txt / nyu_test.txt (NYU)" if nyu else "images/ + annotations/ (ADE20K)"
        raise ProteusError(
            f"--data {root}: no {split}/ folder; expected {split}/images with its maps beside "
            f"it, or {alt}"
        )
    return folder


def _pairs(images: Path, targets: Path, name: str) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """Images and maps matched by file name (the suffix aside); every image needs its map."""
    for folder in (images, targets):
        if not folder.is_dir():
            raise ProteusError(f"{name}: no folder {folder}")
    pictures = {p.stem: p for p in sorted(images.iterdir()) if _is_image(p)}
    maps = {p.stem: p for p in sorted(targets.iterdir()) if p.suffix.lower() == ".png"}
    if not pictures:
        raise ProteusError(f"{name}: {images} holds no images: the split is empty")
    missing = sorted(set(pictures) - set(maps))
    if missing:
        raise ProteusError(
            f"{name}: {images / pictures[missing[0]].name} has no map {targets / missing[0]}.png "
            f"({len(missing)} image(s) without one; names must match)"
        )
    extra = sorted(set(maps) - set(pictures))
    if extra:
        raise ProteusError(
            f"{name}: {maps[extra[0]]} has no image in {images} ({len(extra)} map(s) without "
            "one; names must match)"
        )
    stems = sorted(pictures)
    return tuple(pictures[s] for s in stems), tuple(maps[s] for s in stems)


def _listed(root: Path, listing: Path) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    images, depths = [], []
    for number, line in enumerate(listing.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise ProteusError(f"{listing}:{number}: expected 'RGB-PATH DEPTH-PATH [FOCAL]'")
        image, depth = root / parts[0].lstrip("/"), root / parts[1].lstrip("/")
        for path in (image, depth):
            if not path.is_file():
                raise ProteusError(f"{listing}:{number}: no file {path}")
        images.append(image)
        depths.append(depth)
    if not images:
        raise ProteusError(f"{listing}: lists no pairs: the split is empty")
    return tuple(images), tuple(depths)


def _same_size(image: Path, target: Path) -> None:
    with Image.open(image) as a, Image.open(target) as b:
        if a.size != b.size:
            raise ProteusError(
                f"{target}: its map is {b.size[0]}×{b.size[1]} but its image {image} is "
                f"{a.size[0]}×{a.size[1]}: a map must match its image pixel for pixel"
            )


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _read(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as opened:
            return np.asarray(opened.convert(mode))
    except OSError as exc:
        raise ProteusError(f"{path}: cannot be read as an image ({exc})") from exc
