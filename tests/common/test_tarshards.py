"""webdataset tar shards as --data: discovery, labels, member reads, and a cache whose views
replay straight from the tars."""

from __future__ import annotations

import io
import tarfile

import imagegen
import numpy as np
import pytest
import torch
from extract_helpers import extract
from train_helpers import train

from proteus.common.cache.reader import Cache
from proteus.common.dataset import scan_images
from proteus.common.errors import ProteusError
from proteus.common.images import probe_image, read_encoded
from proteus.common.renderer import RenderConfig, Renderer
from proteus.common.tarshards import expand_braces
from proteus.common.teachers import build_teacher


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two shards of the ImageFolder imagegen makes: key.<ext> + key.cls (the class index);
    one sample without a label, and a stray non-image member."""
    root = tmp_path_factory.mktemp("wds")
    folder = imagegen.image_folder(root / "folder", classes=2, per_class=3)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    out = root / "shards"
    out.mkdir()
    for index in range(2):
        with tarfile.open(out / f"train-{index:06d}.tar", "w") as tar:
            for n, path in enumerate(files[index::2]):
                key = f"{path.parent.name}_{n:03d}"
                _add(tar, f"{key}{path.suffix}", path.read_bytes())
                if not (index == 1 and n == 0):
                    _add(
                        tar,
                        f"{key}.cls",
                        path.parent.name.removeprefix("class").encode(),
                    )
                _add(tar, f"{key}.json", b"{}")
    return out


def test_discovery_from_a_folder_a_file_and_a_pattern(shards):
    images = scan_images(shards)
    assert images.kind == "webdataset" and len(images) == 6
    assert images.paths[0].startswith("train-000000.tar/") and images.root == shards.resolve()
    assert (images.labels == -1).sum() == 1 and set(images.labels.tolist()) == {-1, 0, 1}
    one = scan_images(shards / "train-000001.tar")
    assert len(one) == 3 and one.root == shards.resolve()
    pattern = scan_images(shards / "train-{000000..000001}.tar")
    assert pattern.paths == images.paths and pattern.fingerprint() == images.fingerprint()
    assert expand_braces("s-{08..10}.tar") == ["s-08.tar", "s-09.tar", "s-10.tar"]
    assert expand_braces("{a,b}{1..2}") == ["a1", "a2", "b1", "b2"]


def test_members_read_like_files(shards):
    images = scan_images(shards)
    with tarfile.open(shards / "train-000000.tar") as tar:
        member = images.paths[0].split("/", 1)[1]
        raw = tar.extractfile(member).read()  # type: ignore[union-attr]
    path = images.root / images.paths[0]
    assert bytes(read_encoded(path, False)) == raw
    probe = probe_image(path)
    assert not probe.error and probe.height > 0 and probe.width > 0


def test_bad_shards_are_one_line_errors(shards, tmp_path):
    with pytest.raises(ProteusError, match=r"2 of the 3 shards the pattern names do not exist"):
        scan_images(shards / "train-{000001..000003}.tar")
    bad = tmp_path / "bad"
    bad.mkdir()
    with tarfile.open(bad / "x.tar", "w") as tar:
        _add(tar, "a.jpg", b"not really")
        _add(tar, "a.cls", b"dog")
    with pytest.raises(ProteusError, match=r"a.cls holds 'dog', not an integer class label"):
        scan_images(bad)
    (bad / "x.tar").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ProteusError, match="not a plain tar file"):
        scan_images(bad / "x.tar")


def test_a_cache_from_shards_replays_its_views_from_the_tars(shards, tmp_path, tiny_weights):
    extract(shards, tmp_path / "cache", tiny_weights, views=2)
    cache = Cache(tmp_path / "cache")
    m = cache.manifest
    assert m.dataset["kind"] == "webdataset" and m.counts["usable_images"] == 6
    ids = cache.usable_views()
    views = cache.views[ids]
    pixels = Renderer(RenderConfig.from_manifest(m, max_batch=16)).render(
        [cache.encoded(i) for i in views.image], views
    )
    teacher = build_teacher(m.teacher, layers=m.layers, weights=tiny_weights)
    stored = torch.from_numpy(cache.read("cls", ids).astype(np.float32))
    torch.testing.assert_close(stored, teacher(pixels)["cls"], rtol=1e-3, atol=2e-3)
    result = train(tmp_path / "cache", tmp_path / "run", max_steps=2)
    assert result.steps == 2
