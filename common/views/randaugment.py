"""RandAugment as recorded view parameters: drawn once per view, replayed by DALI.

The reference augments with timm's ``rand-m9-mstd0.5-inc1``: two operations per image, each
picked uniformly (with replacement) from the 15 "increasing" operations, each applied with
probability 0.5 at a magnitude drawn from N(9, 0.5) clipped to [0, 10], most with a random
sign. Here those draws are made in Python (``sample_layers``) and stored in the view table as
an operation id and its final parameter per layer; ``layer_feeds`` turns them into the
per-sample inputs of the DALI kernels in ``dali_ops.py``, so extraction and training produce
the same bytes on the same backend.

The operations are DALI's, not PIL's, so pixels differ slightly from timm's (docs/
ARCHITECTURE.md lists where); the distribution of views is the same.
"""

from __future__ import annotations

import math

import numpy as np

# timm auto_augment._RAND_INCREASING_TRANSFORMS, in its order: a recorded op id indexes this.
OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
NONE = -1  # the layer's operation was skipped (probability) or there is no layer
LEVEL_DENOM = 10.0  # timm's _LEVEL_DENOM: magnitudes are in [0, 10]
# timm create_transform: img_mean = round(255 × ImageNet mean), the fill of geometric ops.
FILL = (124.0, 116.0, 104.0)
_SIGNED = {
    "Rotate",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
}


def level_to_param(op: str, level: float, negate: bool, translate: float = 0.45) -> float:
    """timm's ``LEVEL_TO_ARG`` for the increasing ops: the argument the operation gets."""
    scaled = level / LEVEL_DENOM
    sign = -1.0 if negate else 1.0
    if op == "Rotate":
        return sign * scaled * 30.0  # degrees, counter-clockwise
    if op in ("ShearX", "ShearY"):
        return sign * scaled * 0.3
    if op in ("TranslateXRel", "TranslateYRel"):
        return sign * scaled * translate  # share of the image side
    if op.endswith("Increasing") and op not in ("PosterizeIncreasing", "SolarizeIncreasing"):
        return max(0.1, 1.0 + sign * scaled * 0.9)  # enhance factor, 1 = unchanged
    if op == "PosterizeIncreasing":
        return float(4 - int(scaled * 4))  # bits kept
    if op == "SolarizeIncreasing":
        return float(256 - min(256, int(scaled * 256)))  # threshold
    if op == "SolarizeAdd":
        return float(min(128, int(scaled * 110)))  # added below 128
    return 0.0  # AutoContrast, Equalize, Invert take no argument


def sample_layers(
    rng: np.random.Generator,
    layers: int,
    magnitude: float,
    magnitude_std: float,
    prob: float,
    translate: float,
) -> tuple[list[int], list[float]]:
    """One view's RandAugment: per layer the op id (or NONE) and its parameter.

    The draws follow timm's order: the ops of every layer first, then per layer the
    probability, the magnitude and the sign."""
    ops = [int(i) for i in rng.integers(0, len(OPS), size=layers)]
    ids, params = [], []
    for op in ops:
        if rng.random() >= prob:
            ids.append(NONE)
            params.append(0.0)
            continue
        level = min(LEVEL_DENOM, max(0.0, rng.normal(magnitude, magnitude_std)))
        negate = OPS[op] in _SIGNED and rng.random() < 0.5
        ids.append(op)
        params.append(level_to_param(OPS[op], level, negate, translate))
    return ids, params


# ------------------------------------------------------------------ renderer inputs
# The DALI side dispatches on a kernel index: the five geometric ops are one affine warp.
_KERNEL = {
    "AutoContrast": 2,
    "Equalize": 3,
    "Invert": 4,
    "Rotate": 1,
    "PosterizeIncreasing": 5,
    "SolarizeIncreasing": 6,
    "SolarizeAdd": 7,
    "ColorIncreasing": 8,
    "ContrastIncreasing": 9,
    "BrightnessIncreasing": 10,
    "SharpnessIncreasing": 11,
    "ShearX": 1,
    "ShearY": 1,
    "TranslateXRel": 1,
    "TranslateYRel": 1,
}
_IDENTITY = np.array([[1, 0, 0], [0, 1, 0]], np.float32)


def affine(op: str, param: float, size: int) -> np.ndarray:
    """The 2×3 matrix from output to source pixel coordinates (PIL's ``transform`` form)."""
    if op == "ShearX":
        return np.array([[1, param, 0], [0, 1, 0]], np.float32)
    if op == "ShearY":
        return np.array([[1, 0, 0], [param, 1, 0]], np.float32)
    if op == "TranslateXRel":
        return np.array([[1, 0, param * size], [0, 1, 0]], np.float32)
    if op == "TranslateYRel":
        return np.array([[1, 0, 0], [0, 1, param * size]], np.float32)
    if op == "Rotate":  # PIL Image.rotate: counter-clockwise about the centre
        a = math.radians(param)
        c, s, mid = math.cos(a), math.sin(a), size / 2
        return np.array(
            [[c, -s, mid - c * mid + s * mid], [s, c, mid - s * mid - c * mid]], np.float32
        )
    return _IDENTITY


def _sharpness_kernel(factor: float) -> np.ndarray:
    """PIL ImageEnhance.Sharpness: blend with its SMOOTH filter by ``factor``."""
    smooth = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13
    ident = np.zeros((3, 3), np.float32)
    ident[1, 1] = 1
    return (smooth + factor * (ident - smooth)).astype(np.float32)


def layer_feeds(ops: np.ndarray, params: np.ndarray, size: int) -> dict[str, list[np.ndarray]]:
    """Per-sample DALI inputs for one layer: kernel index and each kernel's argument."""
    feeds: dict[str, list[np.ndarray]] = {
        k: [] for k in ("kernel", "affine", "scalar", "bits", "kernel3")
    }
    for op_id, param in zip(ops.tolist(), params.tolist(), strict=True):
        op = OPS[op_id] if op_id != NONE else None
        feeds["kernel"].append(np.array(_KERNEL[op] if op else 0, np.int32))
        feeds["affine"].append(affine(op, param, size) if op else _IDENTITY)
        feeds["scalar"].append(np.array(param, np.float32))
        bits = int(param) if op == "PosterizeIncreasing" else 8
        feeds["bits"].append(np.array((0xFF << (8 - bits)) & 0xFF, np.uint8))
        factor = param if op == "SharpnessIncreasing" else 1.0
        feeds["kernel3"].append(_sharpness_kernel(factor))
    return feeds
