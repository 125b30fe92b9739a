"""DALI kernels of the recorded RandAugment operations (see ``randaugment.py``).

Imported only when a pipeline is built: every function here adds DALI graph nodes. Each
kernel takes a uint8 HWC batch and the layer's per-sample inputs by name; ``select``
(DALI's conditional split) sends every sample to its own kernel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn, types
from nvidia.dali.auto_aug.core import select

from proteus.common.views.randaugment import FILL


def apply_randaugment(img, layer_inputs: Sequence[Mapping], revision: int):
    """Inside a pipeline built with ``enable_conditionals=True``: the layers one after the
    other; ``layer_inputs[i]`` holds layer i's external sources by feed name. ``revision``:
    which kernels (renderer.REVISIONS)."""
    kernels = kernels_of(revision)
    for inputs in layer_inputs:
        args = {k: v for k, v in inputs.items() if k != "kernel"}
        # select() is typed for @augmentation objects; it calls plain kernels the same way.
        img = select(kernels, inputs["kernel"], img, **args)
    return img


def _to_uint8(x):
    return fn.cast(dmath.clamp(x, 0, 255), dtype=types.DALIDataType.UINT8)


def _identity(img, **_):
    return img


def _warp(img, affine, **_):
    # warp_affine fills with one value: shift so the fill colour is 0, warp, shift back.
    # (DALI warps only with nearest or linear interpolation; timm's uses bicubic.)
    fill = types.Constant(np.array(FILL, np.float32))
    out = fn.warp_affine(
        img - fill,
        matrix=affine,
        fill_value=0.0,
        interp_type=types.DALIInterpType.INTERP_LINEAR,
        inverse_map=True,
    )
    return _to_uint8(out + fill)


def _auto_contrast(img, **_):
    lo = fn.reductions.min(img, axis_names="HW", keep_dims=True)
    hi = fn.reductions.max(img, axis_names="HW", keep_dims=True)
    flat = (hi - lo) == 0  # a flat channel stays as it is
    return _to_uint8((img - lo * (flat ^ True)) * (255.0 / (hi - lo + flat * 255)))


def _equalize(img, **_):
    return fn.equalize(img)


def _invert(img, **_):
    return types.Constant(255, dtype=types.DALIDataType.UINT8) - img


def _posterize(img, bits, **_):
    return img & bits


def _solarize(img, scalar, **_):
    keep = img < scalar
    return keep * img + (keep ^ True) * (types.Constant(255, dtype=types.DALIDataType.UINT8) - img)


def _solarize_add(img, scalar, **_):
    return _to_uint8(img + (img < 128) * scalar)


def _grey(img):
    return fn.color_space_conversion(
        img, image_type=types.DALIImageType.RGB, output_type=types.DALIImageType.GRAY
    )


def _color(img, scalar, **_):
    """PIL ImageEnhance.Color: blend with the greyscale image, in float."""
    gray = fn.cast(_grey(img), dtype=types.DALIDataType.FLOAT)
    return _to_uint8(gray + (fn.cast(img, dtype=types.DALIDataType.FLOAT) - gray) * scalar)


def _color_wrapping(img, scalar, **_):
    """Revision 1's Color (proteus ≤ 0.2), kept so its caches replay their pixels: img - gray
    is computed in uint8, so negative differences wrap mod 256."""
    gray = _grey(img)
    return _to_uint8(gray + (img - gray) * scalar)


def _contrast(img, scalar, **_):
    # PIL: blend with the mean of the image's luminance.
    mean = fn.reductions.mean(img, axis_names="HW", keep_dims=True)
    weights = types.Constant(np.array([0.299, 0.587, 0.114], np.float32))
    centre = fn.reductions.sum(mean * weights, axis_names="C", keep_dims=True)
    return _to_uint8(centre + (img - centre) * scalar)


def _brightness(img, scalar, **_):
    return _to_uint8(img * scalar)


def _sharpness(img, kernel3, **_):
    return fn.filter(img, kernel3, border="clamp")


# By kernel index (randaugment._KERNEL): 0 = identity, 1 = every geometric op.
_COLOR = 8
KERNELS = [
    _identity,
    _warp,
    _auto_contrast,
    _equalize,
    _invert,
    _posterize,
    _solarize,
    _solarize_add,
    _color,
    _contrast,
    _brightness,
    _sharpness,
]


def kernels_of(revision: int) -> list[Any]:
    """The kernels of a renderer revision: revision 1 had the wrapping Color."""
    if revision == 1:
        return [*KERNELS[:_COLOR], _color_wrapping, *KERNELS[_COLOR + 1 :]]
    return KERNELS
