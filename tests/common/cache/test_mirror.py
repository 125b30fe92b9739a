"""The shard cache that remote caches are read through, on a ``file://`` store (obstore's
local backend: the same code path as s3:// without a server): size limit and LRU eviction,
prefetch, a cache replaced under a reader, and what is refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import imagegen
import numpy as np
import pytest
from click.testing import CliRunner
from extract_helpers import extract
from s3server import copy_prefix
from train_helpers import train

from proteus.app import main as app
from proteus.common.cache.layout import shard_key
from proteus.common.cache.mirror import CacheMirror
from proteus.common.cache.reader import Cache
from proteus.common.runtime.errors import ProteusError
from proteus.common.storage.objectstore import ObjectStore
from proteus.common.storage.shardcache import ShardCacheConfig
from proteus.evaluate.agreement import run_agreement
from proteus.options import Location


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, str]:
    """A local cache and the same extraction at a file:// URL (8 shards of 3 views)."""
    root = tmp_path_factory.mktemp("mirror")
    data = imagegen.image_folder(root / "data", classes=2, per_class=4)
    weights = imagegen.save_teacher_weights("tiny_dinov2", root / "w.safetensors")
    extract(data, root / "local", weights, shard_views=3)
    url = f"file://{root}/store/cache"
    extract(data, url, weights, shard_views=3, staging=root / "staging")
    return root / "local", url


def _shard_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("targets/*/c/**/*") if p.is_file()]


def test_reads_equal_the_local_cache_and_fetch_only_what_is_read(world, tmp_path):
    local, url = world
    cache = Cache(url, shard_cache=ShardCacheConfig(tmp_path, 2**30))
    assert not _shard_files(tmp_path)  # only metadata at open
    ids = np.array([7, 1, 7])  # shards 2 and 0
    assert np.array_equal(cache.read("patch", ids), Cache(local).read("patch", ids))
    fetched = sorted(p.relative_to(cache.path).as_posix() for p in _shard_files(tmp_path))
    assert fetched == sorted(shard_key("patch", s, 3) for s in (0, 2))


def test_the_size_limit_evicts_the_least_recently_used_shards(world, tmp_path):
    local, url = world
    shard = ObjectStore(url).list()[shard_key("patch", 0, 3)]
    cache = Cache(url, shard_cache=ShardCacheConfig(tmp_path, 3 * shard))
    reference = Cache(local)
    for view in range(cache.manifest.counts["views"]):
        ids = np.array([view])
        assert np.array_equal(cache.read("patch", ids), reference.read("patch", ids))
        assert sum(p.stat().st_size for p in _shard_files(tmp_path)) <= 3 * shard
    kept = {p.relative_to(cache.path).as_posix() for p in _shard_files(tmp_path)}
    assert kept == {shard_key("patch", s, 3) for s in (5, 6, 7)}  # the last three read

    with pytest.raises(ProteusError, match="more than the whole limit"):
        Cache(url, shard_cache=ShardCacheConfig(tmp_path / "small", shard - 1)).read(
            "patch", np.array([0])
        )


def test_prefetch_fetches_the_planned_shards_in_the_background(world, tmp_path):
    _, url = world
    cache = Cache(url, shard_cache=ShardCacheConfig(tmp_path, 2**30))
    cache.prefetch(("cls", "patch"), np.array([0, 10, 11]))  # returns at once
    wanted = {shard_key(n, s, d) for n, d in (("cls", 2), ("patch", 3)) for s in (0, 3)}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fetched = {p.relative_to(cache.path).as_posix() for p in _shard_files(tmp_path)}
        if fetched == wanted:
            break
        time.sleep(0.05)
    assert fetched == wanted


def test_a_cache_replaced_under_a_reader_is_refused_not_mixed(world, tmp_path):
    _, url = world
    copy = f"file://{tmp_path}/copy"
    copy_prefix(url, copy)
    dst = ObjectStore(copy)
    cache = Cache(copy, shard_cache=ShardCacheConfig(tmp_path / "shards", 2**30))
    cache.read("cls", np.array([0]))
    # Another extraction sealed at the same URL (its seal record names another manifest).
    dst.put("progress/seal.json", json.dumps({"manifest_sha256": "0" * 64}).encode())
    with pytest.raises(ProteusError, match="changed while it was being read"):
        cache.read("cls", np.array([20]))
    cache.read("cls", np.array([1]))  # shards already checked here stay readable
    # A new reader sees the new seal, and its manifest no longer matches it.
    with pytest.raises(ProteusError, match="changed after sealing"):
        Cache(copy, shard_cache=ShardCacheConfig(tmp_path / "shards", 2**30))


def test_unsealed_and_foreign_prefixes_are_refused(world, tmp_path):
    _, url = world
    store = ObjectStore(f"file://{tmp_path}/other")
    with pytest.raises(ProteusError, match=r"not a proteus cache \(nothing there\)"):
        CacheMirror(f"file://{tmp_path}/other", config=ShardCacheConfig(tmp_path / "s", 1))
    store.put("zarr.json", ObjectStore(url).get("zarr.json"))
    with pytest.raises(ProteusError, match="not sealed"):
        Cache(f"file://{tmp_path}/other", shard_cache=ShardCacheConfig(tmp_path / "s", 1))


def test_cache_locations_keep_urls_and_refuse_other_schemes():
    kind = Location()
    assert kind.convert("s3://bucket/a/b", None, None) == "s3://bucket/a/b"
    assert kind.convert("some/dir", None, None) == Path("some/dir")
    with pytest.raises(Exception, match="only s3://, gs:// and file://"):
        kind.convert("http://host/cache", None, None)


def test_views_from_a_remote_cache(world, tmp_path, monkeypatch):
    local, url = world
    monkeypatch.setenv("PROTEUS_SHARD_CACHE", str(tmp_path / "shards"))
    root = local.parent
    m = extract(root / "data", tmp_path / "again", root / "w.safetensors", views_from=url)
    assert m.views_from["cache"] == url
    assert np.array_equal(Cache(tmp_path / "again").views.crop, Cache(local).views.crop)


def test_agreement_and_cache_commands_take_a_url(world, tmp_path, monkeypatch):
    local, url = world
    monkeypatch.setenv("PROTEUS_SHARD_CACHE", str(tmp_path / "shards"))
    train(local, tmp_path / "run", max_steps=2)
    remote = run_agreement(tmp_path / "run", url, progress=False)
    assert remote == run_agreement(tmp_path / "run", local, progress=False)
    runner = CliRunner()
    info = runner.invoke(app, ["cache", "info", url])
    assert info.exit_code == 0 and f"cache      {url}" in info.output
    verify = runner.invoke(app, ["cache", "verify", url])
    assert verify.exit_code == 0 and "OK  file://" in verify.output


def test_unwritable_shard_cache_and_staging_are_named(world, tmp_path):
    local, url = world
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # nothing can be created under a file, not even by root
    with pytest.raises(ProteusError, match=r"shard cache: cannot create .*--shard-cache"):
        Cache(url, shard_cache=ShardCacheConfig(blocker / "shards", 2**30))
    root = local.parent
    with pytest.raises(ProteusError, match=r"--staging: cannot write .*a-file"):
        extract(
            root / "data",
            f"file://{tmp_path}/out",
            root / "w.safetensors",
            staging=blocker / "staging",
        )
