"""The DALI renderer on the CPU: exact replay, and each augmentation does what it records."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from proteus.common.views.records import NO_AUGMENTATION, AugPolicy, ViewTable, sample_views
from proteus.common.views.renderer import RenderConfig, Renderer

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format=fmt)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def _normalise(pixels: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(pixels).permute(2, 0, 1).float()
    mean = torch.tensor(MEAN)[:, None, None] * 255
    std = torch.tensor(STD)[:, None, None] * 255
    return (x - mean) / std


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((48, 64, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(RenderConfig(image_size=32, mean=MEAN, std=STD, max_batch=16))


def _view(crop, flip=False, color=(1, 1, 1, 0), gray=False, erase=(0, 0, 0, 0)) -> ViewTable:
    return ViewTable(
        image=np.zeros(1, np.int64),
        view=np.zeros(1, np.int32),
        crop=np.array([crop], np.int32),
        flip=np.array([flip]),
        color=np.array([color], np.float32),
        grayscale=np.array([gray]),
        erase=np.array([erase], np.int32),
    )


def test_replay_is_byte_identical_across_calls_renderers_and_batches(photo, renderer):
    encoded = [_encode(photo), _encode(photo[::-1].copy(), "JPEG")]
    views = sample_views(
        AugPolicy(erase_prob=0.5), 3, np.arange(2), np.array([[48, 64]] * 2), 4, 32
    )
    batch = [encoded[i] for i in views.image]
    first = renderer.render(batch, views)
    assert first.shape == (8, 3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, renderer.render(batch, views))
    other = Renderer(RenderConfig(image_size=32, mean=MEAN, std=STD, max_batch=16))
    assert torch.equal(first, other.render(batch, views))
    assert torch.equal(first[5:6], renderer.render(batch[5:6], views[5:6]))


def test_crop_is_in_source_pixels(photo, renderer):
    # A 32×32 crop rendered at 32 px is the source pixels themselves, normalised.
    out = renderer.render([_encode(photo)], _view((10, 20, 32, 32)))[0]
    torch.testing.assert_close(out, _normalise(photo[10:42, 20:52]), rtol=0, atol=1e-5)


def test_flip_mirrors_the_final_view(photo, renderer):
    plain = renderer.render([_encode(photo)], _view((0, 0, 48, 64)))
    flipped = renderer.render([_encode(photo)], _view((0, 0, 48, 64), flip=True))
    assert torch.equal(flipped, plain.flip(-1))


def test_erase_box_is_in_output_pixels_after_the_flip(photo, renderer):
    box = (4, 3, 10, 7)
    plain = renderer.render([_encode(photo)], _view((0, 0, 48, 64), flip=True))[0]
    erased = renderer.render([_encode(photo)], _view((0, 0, 48, 64), flip=True, erase=box))[0]
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[4:14, 3:10] = True
    assert (erased[:, inside] == 0).all()
    assert torch.equal(erased[:, ~inside], plain[:, ~inside])


def test_grayscale_makes_channels_equal(photo, renderer):
    out = renderer.render([_encode(photo)], _view((0, 0, 48, 64), gray=True))[0]
    pixels = out * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]
    assert (pixels.amax(0) - pixels.amin(0)).max() < 1.5 / 255


def test_colour_jitter_changes_pixels(photo, renderer):
    plain = renderer.render([_encode(photo)], _view((0, 0, 48, 64)))
    darker = renderer.render([_encode(photo)], _view((0, 0, 48, 64), color=(0.5, 1, 1, 0)))
    assert darker.mean() < plain.mean() - 0.5


@pytest.mark.parametrize(
    "array, mode",
    [
        (np.full((20, 30), 128, np.uint8), "L"),  # grayscale
        (np.full((20, 30, 4), 200, np.uint8), "RGBA"),  # alpha channel
    ],
)
def test_any_png_becomes_three_channels(renderer, array, mode):
    views = sample_views(NO_AUGMENTATION, 0, np.arange(1), np.array([array.shape[:2]]), 1, 32)
    out = renderer.render([_encode(array, mode=mode)], views)
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()


def test_batch_larger_than_configured_is_refused(photo, renderer):
    views = sample_views(
        NO_AUGMENTATION, 0, np.zeros(17, np.int64), np.array([[48, 64]] * 17), 1, 32
    )
    with pytest.raises(ValueError, match=r"1\.\.16"):
        renderer.render([_encode(photo)] * 17, views)


def _reference_renderer(size: int = 32) -> Renderer:
    return Renderer(RenderConfig.for_policy(AugPolicy(), size, MEAN, STD, max_batch=16))


def test_reference_policy_replays_byte_identically(photo):
    # RandAugment (two layers), bicubic resampling and pixel-mode erasing, all on.
    encoded = [_encode(photo), _encode(photo[::-1].copy(), "JPEG")]
    views = sample_views(
        AugPolicy(erase_prob=0.5), 3, np.arange(2), np.array([[48, 64]] * 2), 8, 32
    )
    assert (views.ra_op >= 0).sum() >= 6 and views.erase_seed.any()
    batch = [encoded[i] for i in views.image]
    renderer = _reference_renderer()
    first = renderer.render(batch, views)
    assert torch.equal(first, renderer.render(batch, views))
    assert torch.equal(first, _reference_renderer().render(batch, views))
    assert torch.equal(first[5:9], renderer.render(batch[5:9], views[5:9]))


@pytest.mark.parametrize("op", range(15))
def test_every_randaugment_op_renders_and_changes_the_view(photo, op):
    from proteus.common.views.randaugment import OPS, level_to_param

    view = _view((0, 0, 48, 64))
    plain = _reference_renderer().render([_encode(photo)], view)
    view.ra_op = np.array([[op, -1]], np.int8)
    view.ra_param = np.array([[level_to_param(OPS[op], 9.0, False), 0]], np.float32)
    out = _reference_renderer().render([_encode(photo)], view)
    assert out.shape == plain.shape and torch.isfinite(out).all()
    assert not torch.equal(out, plain), OPS[op]


def test_pixel_erase_fills_the_box_with_the_recorded_noise(photo):
    box, seed = (4, 3, 10, 7), 12345
    plain = _reference_renderer().render([_encode(photo)], _view((0, 0, 48, 64)))[0]
    view = _view((0, 0, 48, 64), erase=box)
    view.erase_seed = np.array([seed], np.uint32)
    erased = _reference_renderer().render([_encode(photo)], view)[0]
    y, x, h, w = box
    noise = np.random.default_rng(seed).standard_normal((3, h, w), dtype=np.float32)
    assert torch.equal(erased[:, y : y + h, x : x + w], torch.from_numpy(noise))
    erased[:, y : y + h, x : x + w] = plain[:, y : y + h, x : x + w]
    assert torch.equal(erased, plain)
