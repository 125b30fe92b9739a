"""A cache that grows: extract --views K' on a sealed K-view cache appends K' − K views of
every image; what it had stays byte for byte, the new views are the ones a K'-view cache
records, and training samples all of them."""

from __future__ import annotations

import imagegen
import numpy as np
import pytest
from extract_helpers import extract, run_cli
from train_helpers import train

from proteus.common.cache.describe import info_lines
from proteus.common.cache.reader import Cache
from proteus.common.cache.verify import verify_cache
from proteus.common.runtime.errors import ProteusError
from proteus.train.sources import CacheSource

SHARD = 5  # 16 views: the last shard of the 2-view cache holds old and new rows once grown


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("grow")
    data = imagegen.image_folder(root / "data", classes=2, per_class=4)
    weights = imagegen.save_teacher_weights("tiny_dinov2", root / "w.safetensors")
    extract(data, root / "direct", weights, views=5, shard_views=SHARD, holdout_views=1)
    return root


def _grown(world, out, views=(2, 5), **overrides):
    for k in views:
        extract(
            world / "data",
            out,
            world / "w.safetensors",
            views=k,
            shard_views=SHARD,
            holdout_views=1,
            **overrides,
        )
    return Cache(out)


def _by_view(cache: Cache) -> np.ndarray:
    """View ids in (image, view) order: caches laid out differently, compared alike."""
    return np.lexsort((cache.views.view, cache.views.image))


def test_growing_keeps_every_old_byte_and_adds_the_views_a_larger_cache_records(world, tmp_path):
    small = _grown(world, tmp_path / "c", views=(2,))
    old_ids = np.arange(small.manifest.counts["views"])
    before = {n: small.read_stored(n, old_ids) for n in small.manifest.arrays}
    old_records, old_digest = small.views, small.manifest.digest()
    grown = _grown(world, tmp_path / "c", views=(5,))
    m = grown.manifest
    assert m.views_per_image == 5 and m.state == "sealed" and m.digest() != old_digest
    assert m.grown_from == [{"views_per_image": 2, "views": 24, "manifest_sha256": old_digest}]
    assert m.segments == [[0, 2], [1 << 30, 1], [2, 3]]
    for name, stored in before.items():
        for key, values in stored.items():
            assert np.array_equal(grown.read_stored(name, old_ids)[key], values), (name, key)
    for column, values in old_records.columns().items():
        assert np.array_equal(grown.views[old_ids].columns()[column], values), column
    direct = Cache(world / "direct")
    ours, theirs = _by_view(grown), _by_view(direct)
    for column, values in grown.views[ours].columns().items():
        assert np.array_equal(values, direct.views[theirs].columns()[column]), column
    for name in m.targets:
        assert np.array_equal(grown.read(name, ours), direct.read(name, theirs)), name
    for name, entry in direct.manifest.stats.items():
        np.testing.assert_allclose(m.stats[name]["mean"], entry["mean"], atol=1e-6)
        np.testing.assert_allclose(m.stats[name]["std"], entry["std"], atol=1e-6)
        assert m.stats[name]["tokens"] == entry["tokens"]
    assert m.counts == direct.manifest.counts
    assert verify_cache(tmp_path / "c") == []
    assert any("grown      from K=2" in line for line in info_lines(tmp_path / "c", m))


def test_training_on_a_grown_cache_samples_every_view_before_repeating(world, tmp_path):
    grown = _grown(world, tmp_path / "c")
    rows = CacheSource(grown).rows(None)
    views = grown.views.view[rows.view_ids]
    assert (views == np.arange(5)).all()  # every image's five training views, in order
    train(tmp_path / "c", tmp_path / "run", max_steps=2)


def test_growing_with_another_option_changed_is_refused_and_changes_nothing(world, tmp_path):
    small = _grown(world, tmp_path / "c", views=(2,))
    digest, files = small.manifest.digest(), sorted(p for p in (tmp_path / "c").rglob("*"))
    with pytest.raises(ProteusError, match="seed: cache has 0, asked 1") as refused:
        _grown(world, tmp_path / "c", views=(5,), seed=1)
    assert "\n" not in str(refused.value)
    with pytest.raises(ProteusError, match="a cache only grows; train --views 1"):
        _grown(world, tmp_path / "c", views=(1,))
    assert Cache(tmp_path / "c").manifest.digest() == digest
    assert sorted(p for p in (tmp_path / "c").rglob("*")) == files


def test_a_run_on_the_cache_before_it_grew_resumes_only_when_told(world, tmp_path):
    _grown(world, tmp_path / "c", views=(2,))
    train(tmp_path / "c", tmp_path / "run", max_steps=2)
    _grown(world, tmp_path / "c", views=(5,))
    with pytest.raises(ProteusError, match="grew since this run started") as refused:
        train(tmp_path / "c", tmp_path / "run", max_steps=4, resume=True)
    assert "--allow-grown-cache" in str(refused.value)
    result = train(
        tmp_path / "c", tmp_path / "run", max_steps=4, resume=True, allow_grown_cache=True
    )
    assert result.steps == 4


def test_the_cli_says_it_grows(world, tmp_path):
    from extract_helpers import cli_args

    args = cli_args(world / "data", tmp_path / "c", world / "w.safetensors")
    assert run_cli(*args, "--views", "2").returncode == 0
    grown = run_cli(*args, "--views", "4")
    assert grown.returncode == 0, grown.stderr
    assert "growing the cache from 2 to 4 views per image" in grown.stderr
