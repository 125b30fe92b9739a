"""Image files as the renderer sees them: probing headers, and the bytes fed to DALI.

DALI's ROI decoder reads baseline/progressive JPEG and PNG directly. Anything else (WebP,
TIFF, BMP, GIF, CMYK JPEG, palette or 16-bit PNG, EXIF-rotated photos) is decoded once by
Pillow and re-encoded as lossless PNG, by the same function in both stages, so the renderer
always gets bytes it decodes identically. The image table records which path each image
takes, so the trainer never has to probe again.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from proteus.common.data.tarshards import read_image_bytes, split_member

# (format, mode) pairs DALI decodes itself, with output identical to Pillow's pixels.
_DIRECT = {("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L")}
_ROTATING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap H and W
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageProbe:
    """What a header read tells us; ``error`` set means the image is skipped."""

    height: int = 0
    width: int = 0
    transcode: bool = False  # re-encode through Pillow before DALI decodes it
    error: str = ""


def probe_image(path: Path) -> ImageProbe:
    """Read the header only (fast); sizes are after EXIF orientation, as rendered."""
    try:
        with warnings.catch_warnings():
            # Huge images are legitimate data here, not decompression bombs.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            source = path if split_member(path) is None else io.BytesIO(read_image_bytes(path))
            with Image.open(source) as img:
                width, height = img.size
                orientation = img.getexif().get(_ORIENTATION_TAG, 1)
                transcode = (img.format, img.mode) not in _DIRECT or orientation != 1
    except Image.DecompressionBombError:
        return ImageProbe(error="larger than Pillow's decompression-bomb limit")
    except (OSError, ValueError, SyntaxError) as exc:
        # Pillow raises all three for unreadable, truncated-header or non-image files.
        return ImageProbe(error=f"not a readable image ({_short(exc)})")
    if orientation in _ROTATING_ORIENTATIONS:
        height, width = width, height
    if height < 1 or width < 1:
        return ImageProbe(error=f"empty image ({width}x{height})")
    return ImageProbe(height=height, width=width, transcode=transcode)


def read_encoded(path: Path, transcode: bool) -> np.ndarray:
    """The bytes the renderer decodes: the file itself, or its pixels as lossless PNG."""
    data = read_image_bytes(path)
    if transcode:
        data = _to_png(data)
    return np.frombuffer(data, dtype=np.uint8)


def _to_png(data: bytes) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        img.load()
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: keep the top 8 bits instead of clipping everything above 255 to white.
        wide = np.asarray(img, dtype=np.uint32)
        img = Image.fromarray((wide >> 8).clip(0, 255).astype(np.uint8), mode="L")
    elif img.mode not in ("RGB", "L"):
        # CMYK (incl. Adobe's inverted JPEGs), palette, alpha: Pillow's RGB conversion.
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
