"""webdataset tar shards as --data: discovery, labels, member reads, and a cache whose views
replay straight from the tars."""

from __future__ import annotations

import tarfile

import imagegen
import numpy as np
import pytest
import torch
from extract_helpers import extract
from train_helpers import train

from proteus.common.cache.reader import Cache
from proteus.common.data.dataset import scan_images
from proteus.common.data.images import probe_image, read_encoded
from proteus.common.data.tarshards import expand_braces
from proteus.common.models.teachers import build_teacher
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.renderer import RenderConfig, Renderer


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return imagegen.tar_shards(tmp_path_factory.mktemp("wds"))


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
        imagegen.add_member(tar, "a.jpg", b"not really")
        imagegen.add_member(tar, "a.cls", b"dog")
    with pytest.raises(ProteusError, match=r"a.cls holds 'dog', not an integer class label"):
        scan_images(bad)
    (bad / "x.tar").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ProteusError, match="not a plain tar file"):
        scan_images(bad / "x.tar")


def test_a_cache_from_shards_replays_its_views_from_the_tars(shards, tmp_path, tiny_weights):
    extract(shards, tmp_path / "cache", tiny_weights, views=2)
    cache = Cache(tmp_path / "cache")
    m = cache.manifest
    assert m.dataset.kind == "webdataset" and m.counts["usable_images"] == 6
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


def test_shards_at_a_url_are_fetched_into_the_shard_cache(shards, tmp_path, monkeypatch):
    monkeypatch.setenv("PROTEUS_SHARD_CACHE", str(tmp_path / "node"))
    store = f"file://{tmp_path}/store"
    for path in shards.glob("*.tar"):
        (tmp_path / "store").mkdir(exist_ok=True)
        (tmp_path / "store" / path.name).write_bytes(path.read_bytes())
    local = scan_images(shards)
    for spec in (store, f"{store}/", f"{store}/train-{{000000..000001}}.tar"):
        remote = scan_images(spec)
        assert remote.paths == local.paths and (remote.labels == local.labels).all()
        assert remote.location == store and remote.fingerprint() == local.fingerprint()
    assert len(scan_images(f"{store}/train-000001.tar")) == 3
    assert read_encoded(remote.root / remote.paths[4], False).tobytes() == (
        read_encoded(local.root / local.paths[4], False).tobytes()
    )
    with pytest.raises(ProteusError, match=r"2 of the 3 shards named are not in"):
        scan_images(f"{store}/train-{{000001..000003}}.tar")
    with pytest.raises(ProteusError, match=r"no \.tar objects there"):
        scan_images(f"file://{tmp_path}/empty")
