"""Probing and the bytes handed to DALI, for every kind of file users have."""

from __future__ import annotations

import io

import imagegen
import numpy as np
import pytest
from PIL import Image

from proteus.common.data.images import probe_image, read_encoded
from proteus.common.views.renderer import RenderConfig, Renderer


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(RenderConfig(image_size=16, mean=(0.5,) * 3, std=(0.5,) * 3, max_batch=2))


@pytest.mark.parametrize(
    "name, fmt, mode, transcode",
    [
        ("rgb.jpg", "JPEG", None, False),
        ("gray.jpg", "JPEG", "L", False),
        ("rgb.png", "PNG", None, False),
        ("alpha.png", "PNG", "RGBA", False),
        ("cmyk.jpg", "JPEG", "CMYK", True),
        ("palette.png", "PNG", "P", True),
        ("photo.webp", "WEBP", None, True),
        ("photo.bmp", "BMP", None, True),
        ("photo.tiff", "TIFF", None, True),
        ("photo.gif", "GIF", None, True),
    ],
)
def test_every_decodable_format_renders(tmp_path, renderer, name, fmt, mode, transcode):
    path = imagegen.save(imagegen.photo(30, 20, 0), tmp_path / name, fmt, mode)
    probe = probe_image(path)
    assert (probe.height, probe.width, probe.transcode, probe.error) == (30, 20, transcode, "")
    out = renderer.render([read_encoded(path, probe.transcode)], imagegen.whole_view(30, 20))
    assert out.shape == (1, 3, 16, 16) and out.isfinite().all()


def test_sixteen_bit_grey_keeps_its_range(tmp_path):
    ramp = (np.linspace(0, 65535, 32 * 8).reshape(8, 32)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    probe = probe_image(path)
    assert probe.transcode
    pixels = np.asarray(Image.open(io.BytesIO(read_encoded(path, True).tobytes())))
    assert pixels.min() == 0 and pixels.max() == 255  # not clipped to white


def test_exif_rotation_is_applied_and_sizes_follow_it(tmp_path, renderer):
    upright = imagegen.photo(40, 24, 3)  # portrait as displayed
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # landscape as stored on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    probe = probe_image(path)
    assert (probe.height, probe.width, probe.transcode) == (40, 24, True)
    decoded = np.asarray(Image.open(io.BytesIO(read_encoded(path, True).tobytes())))
    assert decoded.shape == (40, 24, 3)
    assert np.abs(decoded.astype(int) - upright.astype(int)).mean() < 12  # JPEG loss only


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "not a readable image"), (b"hello, not an image", "not a readable image")],
)
def test_unreadable_files_are_reported_not_raised(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    assert reason in probe_image(path).error


def test_missing_and_unreadable_files(tmp_path):
    assert "not a readable image" in probe_image(tmp_path / "gone.jpg").error
    path = imagegen.save(imagegen.photo(8, 8, 0), tmp_path / "locked.jpg")
    path.chmod(0)
    try:
        import os

        if os.geteuid() != 0:  # root reads anything
            assert "not a readable image" in probe_image(path).error
    finally:
        path.chmod(0o644)
