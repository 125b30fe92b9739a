"""Every kind of bad or odd input file in one extraction: each handled as
docs/ARCHITECTURE.md ("Bad images") says, and the run finishes."""

from __future__ import annotations

import os

import imagegen
import numpy as np
import pytest
from extract_helpers import extract
from PIL import Image

from proteus.common.cache.reader import Cache
from proteus.common.cache.verify import verify_cache
from proteus.common.data.table import STATUS_FAILED, STATUS_OK, STATUS_SKIPPED

OK, SKIPPED, FAILED = STATUS_OK, STATUS_SKIPPED, STATUS_FAILED


def _jpeg_bytes(h=48, w=40, seed=0) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(imagegen.photo(h, w, seed)).save(buf, format="JPEG")
    return buf.getvalue()


def _corrupt() -> bytes:
    data = bytearray(_jpeg_bytes())
    half = len(data) // 2
    data[half:] = np.random.default_rng(0).bytes(len(data) - half)
    return bytes(data)


def _png16(path):
    Image.fromarray(imagegen.photo(48, 40, 3)[..., 0].astype(np.uint16) * 257).save(path)


def _locked(path):
    imagegen.save(imagegen.photo(48, 40, 3), path)
    path.chmod(0)


PHOTO = imagegen.photo(48, 40, 3)
MAKERS = {
    "good": lambda p: imagegen.save(PHOTO, p),
    "truncated": lambda p: p.write_bytes(_jpeg_bytes()[: len(_jpeg_bytes()) * 2 // 3]),
    "corrupt": lambda p: p.write_bytes(_corrupt()),
    "zero": lambda p: p.write_bytes(b""),
    "text": lambda p: p.write_text("this is not an image\n" * 10),
    "cmyk": lambda p: imagegen.save(PHOTO, p, mode="CMYK"),
    "png16": _png16,
    "rgba": lambda p: imagegen.save(PHOTO, p, mode="RGBA"),
    "gray": lambda p: imagegen.save(PHOTO, p, mode="L"),
    "huge": lambda p: imagegen.save(imagegen.photo(3000, 4000, 5), p),
    "tiny": lambda p: imagegen.save(imagegen.photo(1, 1, 6), p),
    "dangling": lambda p: p.symlink_to(p.parent / "does-not-exist.jpg"),
    "locked": _locked,
}


def _make(root, name, kind):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    MAKERS[kind](path)


# name, kind, allowed outcomes
CASES = [
    ("a/good.jpg", "good", {OK}),
    ("a/truncated.jpg", "truncated", {FAILED}),
    ("a/corrupt.jpg", "corrupt", {OK, SKIPPED, FAILED}),  # decoded as garbage, or listed
    ("a/zero-byte.jpg", "zero", {SKIPPED}),
    ("a/not-an-image.png", "text", {SKIPPED}),
    ("a/cmyk.jpg", "cmyk", {OK}),
    ("a/sixteen-bit.png", "png16", {OK}),
    ("a/alpha.png", "rgba", {OK}),
    ("a/grey.jpg", "gray", {OK}),
    ("a/huge.jpg", "huge", {OK}),
    ("a/tiny.png", "tiny", {OK}),
    ("a/dangling-link.jpg", "dangling", {SKIPPED}),
    ("with space/ünïcødé näme.jpg", "good", {OK}),
    ("a/locked.jpg", "locked", {OK} if os.geteuid() == 0 else {SKIPPED}),  # root reads anything
]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "data"
    for name, kind, _ in CASES:
        _make(root, name, kind)
    (root / "a" / "loop").symlink_to(root / "a", target_is_directory=True)  # a symlink loop
    weights = imagegen.save_teacher_weights("tiny_dinov2", root.parent / "w.safetensors")
    try:
        manifest = extract(root, root.parent / "cache", weights, views=2)
    finally:
        (root / "a" / "locked.jpg").chmod(0o644)
    return manifest, Cache(root.parent / "cache")


@pytest.mark.parametrize("name, kind, allowed", CASES, ids=[c[0] for c in CASES])
def test_each_input(result, name, kind, allowed):
    manifest, cache = result
    paths = cache.images.path.tolist()
    assert paths.count(name) == 1, f"{name} listed {paths.count(name)} times"
    status = int(cache.images.status[paths.index(name)])
    assert status in allowed, f"{name}: status {status}"
    reasons = {item["path"]: item for item in manifest.skipped}
    if status == OK:
        assert name not in reasons
        rows = cache.views.image == paths.index(name)
        assert np.abs(cache.read("cls", np.flatnonzero(rows)).astype(np.float32)).sum() > 0
    else:
        stage = "probe" if status == SKIPPED else "render"
        assert reasons[name]["stage"] == stage and reasons[name]["reason"]


def test_the_run_as_a_whole(result):
    manifest, cache = result
    assert manifest.state == "sealed" and verify_cache(cache.path) == []
    assert manifest.counts["images"] == len(CASES)  # the loop added no duplicates
    assert manifest.counts["skipped_images"] == len(manifest.skipped)
