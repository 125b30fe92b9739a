"""Images the tests make themselves: smooth random photos, saved in the formats users have."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def photo(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth colourful image (random low-frequency field), so resizing matters little."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((4, 4, 3)).astype(np.float32)
    img = Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    noise = rng.normal(0, 8, (height, width, 3))
    return np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8)


def save(array: np.ndarray, path: Path, fmt: str | None = None, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path


def image_folder(root: Path, classes: int = 2, per_class: int = 3, seed: int = 0) -> Path:
    sizes = [(40, 56), (64, 48), (36, 36), (50, 70)]
    for c in range(classes):
        for i in range(per_class):
            h, w = sizes[(c + i) % len(sizes)]
            ext = "png" if (c + i) % 3 == 2 else "jpg"
            save(photo(h, w, seed * 1000 + c * 100 + i), root / f"class{c}" / f"img{i}.{ext}")
    return root


def save_teacher_weights(name: str, path: Path, seed: int = 0) -> Path:
    """Random weights for a registered teacher, saved as safetensors."""
    import torch
    from safetensors.torch import save_file

    from proteus.common.models.teachers import build_teacher

    torch.manual_seed(seed)
    teacher = build_teacher(name, pretrained=False)
    state = {k: v.contiguous() for k, v in teacher.model.state_dict().items()}
    save_file(state, str(path))
    return path


def tinted_folder(root: Path, classes: int = 3, per_class: int = 6, seed: int = 0) -> Path:
    """An ImageFolder whose classes differ in colour, so even weak features separate them."""
    tints = np.array([[1.0, 0.3, 0.3], [0.3, 1.0, 0.3], [0.3, 0.3, 1.0], [1.0, 1.0, 0.2]])
    for c in range(classes):
        for i in range(per_class):
            base = photo(36 + 4 * (i % 3), 40, seed * 1000 + c * 100 + i).astype(np.float32)
            tinted = np.clip(base * tints[c % len(tints)], 0, 255).astype(np.uint8)
            save(tinted, root / f"class{c}" / f"{i}.jpg")
    return root


def tar_shards(root: Path) -> Path:
    """Two webdataset shards (root/shards/train-00000{0,1}.tar) of the ImageFolder
    ``image_folder`` makes: key.<ext> + key.cls (the class index); one sample without a
    label, and a stray non-image member per sample."""
    folder = image_folder(root / "folder", classes=2, per_class=3)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    out = root / "shards"
    out.mkdir(parents=True)
    for index in range(2):
        with tarfile.open(out / f"train-{index:06d}.tar", "w") as tar:
            for n, path in enumerate(files[index::2]):
                key = f"{path.parent.name}_{n:03d}"
                add_member(tar, f"{key}{path.suffix}", path.read_bytes())
                if not (index == 1 and n == 0):
                    add_member(tar, f"{key}.cls", path.parent.name.removeprefix("class").encode())
                add_member(tar, f"{key}.json", b"{}")
    return out


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def whole_view(h: int, w: int, **columns):
    """One view record of a whole h×w image: no flip, colour, erase (and no RandAugment
    unless ``columns`` sets ra_op / ra_param)."""
    import numpy as np

    from proteus.common.views.records import ViewTable

    return ViewTable(
        image=np.zeros(1, np.int64),
        view=np.zeros(1, np.int32),
        crop=np.array([[0, 0, h, w]], np.int32),
        flip=np.zeros(1, bool),
        color=np.array([[1, 1, 1, 0]], np.float32),
        grayscale=np.zeros(1, bool),
        erase=np.zeros((1, 4), np.int32),
        **columns,
    )


COLOURS = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230]], np.uint8)


def seg_folder(root, images=8, size=32, classes=3, seed=0, stripe=8):
    """Images of vertical stripes (``stripe`` px wide) of pure colours, one class each, with
    their label maps."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", images), ("val", max(2, images // 2))):
        for i in range(count):
            per_stripe = rng.integers(0, classes, size // stripe)
            label = np.repeat(per_stripe, stripe)[None].repeat(size, 0).astype(np.uint8)
            save(COLOURS[label], root / split / "images" / f"{i:03d}.png")
            save(label, root / split / "labels" / f"{i:03d}.png")
    return root


def depth_folder(root, images=6, size=32, seed=0):
    """Photos with a depth ramp (16-bit PNG, millimetres)."""
    for split, count in (("train", images), ("val", 3)):
        for i in range(count):
            save(photo(size, size, seed + i), root / split / "images" / f"{i}.png")
            ramp = np.linspace(1000, 8000, size)[:, None].repeat(size, 1).astype(np.uint16)
            (root / split / "depth").mkdir(parents=True, exist_ok=True)
            Image.fromarray(ramp).save(root / split / "depth" / f"{i}.png")
    return root
