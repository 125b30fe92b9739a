"""Augmentation views as data: a seeded policy, and records the renderer replays.

Teacher and student must see the same pixels (Beyer et al. 2022), so augmentation is never
drawn inside a data loader. Each view's parameters are a pure function of
(seed, image index, view index) and the image's size, recorded once and replayed by
both stages through the same renderer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np

from proteus.common.runtime.errors import ProteusError
from proteus.common.views.randaugment import NONE, sample_layers


@dataclass(frozen=True)
class AugPolicy:
    """How views are drawn. Every augmentation can be turned off (probability or range 0).

    Defaults are the reference's training transform (timm ``create_transform`` as Proteus'
    ``datasets.py`` calls it): RandomResizedCrop 0.08–1 bicubic, flip 0.5, RandAugment
    ``rand-m9-mstd0.5-inc1`` (with it timm ignores colour jitter), random erasing p 0.25 in
    'pixel' mode (per-pixel normal noise). Colour jitter and grayscale stay available.
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area share of the image
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio, log-uniform
    interpolation: str = "cubic"  # resampling of the crop: cubic (timm bicubic) | linear
    flip_prob: float = 0.5  # horizontal flip
    jitter_prob: float = 0.0  # chance a view gets colour jitter at all
    brightness: float = 0.3  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.0  # shift drawn from [-h, h] turns (0.5 = 180°)
    grayscale_prob: float = 0.0
    # RandAugment rand-m9-mstd0.5-inc1: layers, magnitude (of 10), its std, each op's chance,
    # and the translate range (share of the side); 0 layers turns it off.
    randaug_layers: int = 2
    randaug_magnitude: float = 9.0
    randaug_std: float = 0.5
    randaug_prob: float = 0.5
    randaug_translate: float = 0.45
    erase_prob: float = 0.25  # DeiT random erasing (reprob)
    erase_mode: str = "pixel"  # pixel: per-pixel N(0, 1) noise | const: the mean colour
    erase_scale: tuple[float, float] = (0.02, 1 / 3)  # erased share of the output area
    erase_ratio: tuple[float, float] = (0.3, 1 / 0.3)  # erased box aspect ratio, log-uniform

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> AugPolicy:
        """A recorded policy. Keys it lacks were not there when it was recorded, so they
        take the values that reproduce what that proteus rendered (LEGACY_KEYS)."""
        data = LEGACY_KEYS | data
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**values)


# What caches recorded before these settings existed were rendered with.
LEGACY_KEYS = {"interpolation": "linear", "randaug_layers": 0, "erase_mode": "const"}

# proteus 0.1's default policy: colour jitter and grayscale in place of RandAugment.
LEGACY_POLICY = AugPolicy(
    interpolation="linear",
    jitter_prob=0.8,
    grayscale_prob=0.2,
    randaug_layers=0,
    erase_mode="const",
    erase_ratio=(0.3, 3.3),
)

NO_AUGMENTATION = AugPolicy(
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    flip_prob=0.0,
    jitter_prob=0.0,
    grayscale_prob=0.0,
    randaug_layers=0,
    erase_prob=0.0,
)

# Named view policies (--aug-preset); --aug settings change single values of the chosen one.
PRESETS = {
    # The reference's views (timm create_transform as Proteus' datasets.py calls it), made for
    # ImageNet photos: what the paper distils with, and the default.
    "reference": AugPolicy(),
    # Images a few dozen pixels wide: an 8% crop of them is a handful of pixels and RandAugment
    # at magnitude 9 removes what is left, so crops of 35% or more, no RandAugment, no erasing.
    "small": AugPolicy(crop_scale=(0.35, 1.0), randaug_layers=0, erase_prob=0.0),
    # Digits, characters, icons: as "small", and no flip (a mirrored glyph is another symbol).
    "glyphs": AugPolicy(crop_scale=(0.3, 1.0), flip_prob=0.0, randaug_layers=0, erase_prob=0.0),
}
DEFAULT_PRESET = "reference"
# Images whose median short side is below this share of the render size get a word of advice.
SMALL_SHARE = 0.5

AUG_FIELDS = tuple(f.name for f in fields(AugPolicy))
_CHOICES = {"interpolation": ("cubic", "linear"), "erase_mode": ("pixel", "const")}


def parse_policy(
    settings: tuple[str, ...] | list[str], no_aug: bool = False, preset: str = DEFAULT_PRESET
) -> AugPolicy:
    """``--aug name=value`` settings on top of a preset (or of no augmentation): each --aug
    changes one value of the preset, so the setting given on the command line wins."""
    if preset not in PRESETS:
        raise ProteusError(f"--aug-preset {preset!r}: one of {', '.join(PRESETS)}")
    if no_aug and preset != DEFAULT_PRESET:
        raise ProteusError(
            f"--no-aug and --aug-preset {preset} each choose the whole view policy: give one"
        )
    base = NO_AUGMENTATION if no_aug else PRESETS[preset]
    changes: dict = {}
    for setting in settings:
        name, sep, text = setting.partition("=")
        name = name.strip()
        if not sep or name not in AUG_FIELDS:
            raise ProteusError(
                f"--aug {setting!r}: expected NAME=VALUE with NAME one of {', '.join(AUG_FIELDS)}"
            )
        if name in _CHOICES:
            if text not in _CHOICES[name]:
                raise ProteusError(
                    f"--aug {setting!r}: {name} is one of {'|'.join(_CHOICES[name])}"
                )
            changes[name] = text
            continue
        pair = isinstance(getattr(base, name), tuple)
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != (2 if pair else 1):
            shape = "two numbers like 0.08,1" if pair else "one number"
            raise ProteusError(f"--aug {setting!r}: {name} takes {shape}")
        changes[name] = values if pair else values[0]
        if name == "randaug_layers":
            changes[name] = int(values[0])
    policy = replace(base, **changes)
    _check_policy(policy)
    return policy


def _check_policy(p: AugPolicy) -> None:
    for name in ("flip_prob", "jitter_prob", "grayscale_prob", "erase_prob"):
        if not 0 <= getattr(p, name) <= 1:
            raise ProteusError(f"--aug {name}={getattr(p, name)}: a probability is in [0, 1]")
    for name in ("crop_scale", "erase_scale"):
        lo, hi = getattr(p, name)
        if not 0 < lo <= hi <= 1:
            raise ProteusError(f"--aug {name}={lo},{hi}: need 0 < low <= high <= 1")
    for name in ("crop_ratio", "erase_ratio"):
        lo, hi = getattr(p, name)
        if not 0 < lo <= hi:
            raise ProteusError(f"--aug {name}={lo},{hi}: need 0 < low <= high")
    for name in ("brightness", "contrast", "saturation"):
        if not 0 <= getattr(p, name) < 1:
            raise ProteusError(f"--aug {name}={getattr(p, name)}: a jitter strength is in [0, 1)")
    if not 0 <= p.hue <= 0.5:
        raise ProteusError(f"--aug hue={p.hue}: a hue shift is in [0, 0.5] turns")
    _check_randaug(p)


def _check_randaug(p: AugPolicy) -> None:
    if not 0 <= p.randaug_layers <= 8:
        raise ProteusError(f"--aug randaug_layers={p.randaug_layers}: 0 (off) to 8 layers")
    if not 0 <= p.randaug_prob <= 1 or not 0 <= p.randaug_magnitude <= 10:
        raise ProteusError("--aug randaug_*: a probability is in [0, 1], a magnitude in [0, 10]")


@dataclass
class ViewTable:
    """K views per image as columns; row i describes one rendered training input.

    ``crop`` is (y, x, h, w) in source pixels, ``erase`` (y, x, h, w) in output pixels of the
    final (flipped) view, all zero when nothing is erased. ``color`` is (brightness, contrast,
    saturation, hue in degrees), identity (1, 1, 1, 0) when not jittered. ``ra_op`` and
    ``ra_param`` are the RandAugment layers (``randaugment.py``; op -1 = none), applied after
    the colour; ``erase_seed`` seeds a pixel-mode erase's noise (0: filled with the mean).
    """

    FIELDS: ClassVar[tuple[str, ...]] = (
        "image",
        "view",
        "crop",
        "flip",
        "color",
        "grayscale",
        "erase",
        "ra_op",
        "ra_param",
        "erase_seed",
    )

    image: np.ndarray  # (V,) int64 image index
    view: np.ndarray  # (V,) int32 view index within its image
    crop: np.ndarray  # (V, 4) int32
    flip: np.ndarray  # (V,) bool
    color: np.ndarray  # (V, 4) float32
    grayscale: np.ndarray  # (V,) bool
    erase: np.ndarray  # (V, 4) int32
    # Columns caches written before RandAugment lack: left out, __post_init__ fills in their
    # "nothing" value, so after construction they are always arrays.
    ra_op: np.ndarray = None  # type: ignore[assignment]  # (V, max(1, layers)) int8
    ra_param: np.ndarray = None  # type: ignore[assignment]  # (V, max(1, layers)) float32
    erase_seed: np.ndarray = None  # type: ignore[assignment]  # (V,) uint32

    def __post_init__(self) -> None:
        n = len(self.image)
        if self.ra_op is None:
            self.ra_op = np.full((n, 1), NONE, np.int8)
        if self.ra_param is None:
            self.ra_param = np.zeros(self.ra_op.shape, np.float32)
        if self.erase_seed is None:
            self.erase_seed = np.zeros(n, np.uint32)

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, rows) -> ViewTable:
        return ViewTable(**{k: v[rows] for k, v in self.columns().items()})

    def columns(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.FIELDS}

    @classmethod
    def concat(cls, tables: list[ViewTable]) -> ViewTable:
        return cls(
            **{name: np.concatenate([getattr(t, name) for t in tables]) for name in cls.FIELDS}
        )


# View index of an image's first held-out view (extract --holdout-views): beyond any number
# of training views a cache can grow to, so held-out records never become training records.
HOLDOUT_VIEW = 1 << 30


def layout_views(
    policy: AugPolicy,
    seed: int,
    images: np.ndarray,
    sizes: np.ndarray,
    segments: list[tuple[int, int]] | list[list[int]],
    out_size: int,
) -> ViewTable:
    """A cache's view table: for each segment (first view index, count), that many views of
    every image in turn, the segments one after another. A cache starts with its K training
    views (0, K), held-out views follow as (HOLDOUT_VIEW, N), and growing it appends (K, K'−K),
    so the rows already there never move."""
    tables = [
        view_records(
            policy,
            seed,
            np.repeat(np.asarray(images, dtype=np.int64), count),
            np.tile(np.arange(start, start + count, dtype=np.int64), len(images)),
            np.repeat(sizes, count, axis=0),
            out_size,
        )
        for start, count in segments
    ]
    return ViewTable.concat(tables)


def sample_views(
    policy: AugPolicy,
    seed: int,
    images: np.ndarray,
    sizes: np.ndarray,
    views: int,
    out_size: int,
) -> ViewTable:
    """Draw ``views`` records for each image index in ``images`` with (H, W) in ``sizes``.

    Each record depends only on (policy, seed, image index, view index, H, W, out_size), so any
    process can re-derive any subset, in any order, and get the same numbers.
    """
    return view_records(
        policy,
        seed,
        np.repeat(np.asarray(images, dtype=np.int64), views),
        np.tile(np.arange(views, dtype=np.int64), len(images)),
        np.repeat(sizes, views, axis=0),
        out_size,
    )


def view_records(
    policy: AugPolicy,
    seed: int,
    images: np.ndarray,
    views: np.ndarray,
    sizes: np.ndarray,
    out_size: int,
) -> ViewTable:
    """The records of view ``views[i]`` of image ``images[i]`` (H, W = ``sizes[i]``): the
    same numbers a cache with that many views holds, for any view index (online training
    draws a new index for every use of an image)."""
    sizes = np.asarray(sizes).reshape(-1, 2)
    rows = [
        _sample_one(policy, seed, int(i), int(v), int(h), int(w), out_size)
        for i, v, (h, w) in zip(images, views, sizes, strict=True)
    ]
    layers = max(1, policy.randaug_layers)
    crop, flip, color, gray, erase, ra_op, ra_param, erase_seed = (
        zip(*rows, strict=True) if rows else ((),) * 8
    )
    return ViewTable(
        image=np.asarray(images, dtype=np.int64),
        view=np.asarray(views, dtype=np.int32),
        crop=np.array(crop, np.int32).reshape(-1, 4),
        flip=np.array(flip, bool),
        color=np.array(color, np.float32).reshape(-1, 4),
        grayscale=np.array(gray, bool),
        erase=np.array(erase, np.int32).reshape(-1, 4),
        ra_op=np.array(ra_op, np.int8).reshape(-1, layers),
        ra_param=np.array(ra_param, np.float32).reshape(-1, layers),
        erase_seed=np.array(erase_seed, np.uint32),
    )


def _sample_one(policy: AugPolicy, seed: int, image: int, view: int, h: int, w: int, out: int):
    # One generator per (seed, image, view): records never depend on sampling order.
    rng = np.random.default_rng(np.random.SeedSequence([seed, image, view]))
    crop = _random_box(rng, h, w, policy.crop_scale, policy.crop_ratio)
    if crop is None:
        crop = _center_box(h, w, policy.crop_ratio)
    flip = rng.random() < policy.flip_prob
    color = (1.0, 1.0, 1.0, 0.0)
    if rng.random() < policy.jitter_prob:
        color = (
            rng.uniform(1 - policy.brightness, 1 + policy.brightness),
            rng.uniform(1 - policy.contrast, 1 + policy.contrast),
            rng.uniform(1 - policy.saturation, 1 + policy.saturation),
            rng.uniform(-policy.hue, policy.hue) * 360.0,
        )
    gray = rng.random() < policy.grayscale_prob
    ra_op, ra_param = [NONE], [0.0]
    if policy.randaug_layers:  # no draws otherwise: older records stay what they were
        ra_op, ra_param = sample_layers(
            rng,
            policy.randaug_layers,
            policy.randaug_magnitude,
            policy.randaug_std,
            policy.randaug_prob,
            policy.randaug_translate,
        )
    erase, erase_seed = (0, 0, 0, 0), 0
    if rng.random() < policy.erase_prob:
        erase = _random_box(rng, out, out, policy.erase_scale, policy.erase_ratio) or erase
        if policy.erase_mode == "pixel" and erase[2]:
            erase_seed = int(rng.integers(1, 2**32))
    return crop, flip, color, gray, erase, ra_op, ra_param, erase_seed


def _random_box(rng, h: int, w: int, scale, ratio, attempts: int = 10):
    """torchvision's RandomResizedCrop / timm's RandomErasing box draw: (y, x, bh, bw)."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        bw = round(math.sqrt(target * aspect))
        bh = round(math.sqrt(target / aspect))
        if 0 < bw <= w and 0 < bh <= h:
            return int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw
    return None


def _center_box(h: int, w: int, ratio) -> tuple[int, int, int, int]:
    """torchvision's fallback: the largest centred box with an aspect ratio inside ``ratio``."""
    aspect = w / h
    if aspect < ratio[0]:
        bw, bh = w, round(w / ratio[0])
    elif aspect > ratio[1]:
        bh, bw = h, round(h * ratio[1])
    else:
        bw, bh = w, h
    return (h - bh) // 2, (w - bw) // 2, bh, bw


def small_image_advice(short_sides: np.ndarray, image_size: int, policy: AugPolicy) -> str | None:
    """One line for images much smaller than the views rendered from them, when the views are
    the reference's (made for ImageNet photos): the preset that suits them, or None."""
    if policy != PRESETS[DEFAULT_PRESET] or not len(short_sides):
        return None
    median = float(np.median(short_sides))
    if median >= SMALL_SHARE * image_size:
        return None
    smallest = median * math.sqrt(policy.crop_scale[0])
    return (
        f"the images' median short side is {median:.0f} px and views are rendered at "
        f"{image_size} px, so every view upscales its crop at least {image_size / median:.1f}× "
        f"(the {policy.crop_scale[0]:.0%} crops {image_size / smallest:.0f}×); the default "
        "views are the reference's, made for ImageNet photos: for images this small pass "
        "--aug-preset small (glyphs for digits and characters; docs/QUALITY.md)"
    )
