"""The extract stage end to end on a tiny teacher: layout, consistency, refusals, inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from extract_helpers import edit_manifest, extract, target_bytes

from proteus.common.cache.layout import read_image_table, read_manifest, read_view_table
from proteus.common.cache.reader import Cache
from proteus.common.cache.verify import verify_cache
from proteus.common.data.table import STATUS_OK
from proteus.common.models.teachers import build_teacher
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.records import AugPolicy, sample_views
from proteus.common.views.renderer import REVISION, RenderConfig, Renderer


@pytest.fixture
def cache(image_folder, tiny_weights, tmp_path):
    extract(image_folder, tmp_path / "cache", tiny_weights)
    return tmp_path / "cache"


def test_manifest_tables_and_targets(cache, image_folder, tiny_weights):
    m = read_manifest(cache)
    assert m.state == "sealed" and m.format_version == 1
    assert (m.teacher, m.teacher_family, m.image_size, m.patch_size) == (
        "tiny_dinov2",
        "dinov2",
        28,
        14,
    )
    teacher = build_teacher("tiny_dinov2", weights=tiny_weights)
    assert m.weights_sha256 == teacher.weights_sha256() and len(m.weights_sha256) == 64
    assert m.targets == {"cls": [32], "patch": [4, 32], "layer_1": [5, 32]}
    assert m.counts["images"] == 6 and m.counts["views"] == 18 and m.num_shards == 4
    assert m.dataset.classes == ("class0", "class1") and m.dataset.kind == "imagefolder"
    assert m.renderer.name == "dali" and m.renderer.dali_version
    assert m.renderer.revision == REVISION and m.render_revision == REVISION  # today's kernels
    assert m.policy == AugPolicy().to_dict() and m.dtype == "float16"

    root = zarr.open_group(str(cache), mode="r")
    images = read_image_table(root)
    assert images.path.tolist() == sorted(images.path.tolist())
    assert images.label.tolist() == [0, 0, 0, 1, 1, 1]
    assert (images.status == STATUS_OK).all()
    assert (images.height[0], images.width[0]) == (40, 56)
    views = read_view_table(root)
    expected = sample_views(
        AugPolicy(), 0, np.arange(6), np.stack([images.height, images.width], 1), 3, 28
    )
    for name, column in expected.columns().items():
        np.testing.assert_array_equal(getattr(views, name), column)
    patch = root["targets/patch"]
    assert patch.dtype == np.float16 and patch.shape == (18, 4, 32)
    assert patch.chunks == (1, 4, 32) and patch.shards == (5, 4, 32)
    assert verify_cache(cache) == []


def test_stored_targets_match_a_fresh_render_and_teacher(cache, tiny_weights):
    # The consistency contract: records + renderer + teacher reproduce what the cache holds.
    c = Cache(cache)
    m = c.manifest
    renderer = Renderer(RenderConfig.for_policy(m.policy, m.image_size, m.mean, m.std, max_batch=8))
    teacher = build_teacher(m.teacher, layers=m.layers, weights=tiny_weights)
    # The default policy is the reference's: RandAugment and pixel-mode erasing are on, and
    # these views use them.
    assert m.policy["randaug_layers"] == 2 and m.policy["erase_mode"] == "pixel"
    ids = np.array([0, 4, 7, 11, 12, 17])
    views = c.views[ids]
    assert (views.ra_op >= 0).any()
    encoded = [c.encoded(i) for i in views.image]
    out = teacher(renderer.render(encoded, views))
    for name, fresh in (
        ("cls", out["cls"]),
        ("patch", out["patch"]),
        ("layer_1", out["layers"][1]),
    ):
        stored = torch.from_numpy(c.read(name, ids).astype(np.float32))
        torch.testing.assert_close(stored, fresh, rtol=1e-3, atol=2e-3)


def test_tensorstore_reads_the_bytes_zarr_python_reads(cache):
    c = Cache(cache)
    ids = np.array([17, 2, 2, 9, 0])
    reference = zarr.open_array(str(cache / "targets" / "patch"), mode="r")
    np.testing.assert_array_equal(c.read("patch", ids), reference.oindex[ids])


def test_sealed_cache_is_read_only_and_rerun_does_nothing(cache, image_folder, tiny_weights):
    before = target_bytes(cache)
    stamp = (cache / "zarr.json").stat().st_mtime_ns
    shard = cache / "targets" / "patch" / "c" / "0" / "0" / "0"
    assert not shard.stat().st_mode & 0o222
    extract(image_folder, cache, tiny_weights)
    assert (cache / "zarr.json").stat().st_mtime_ns == stamp and target_bytes(cache) == before


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed": 1}, "other options.*seed: cache has"),
        # Fewer views: a cache only grows (more views with the rest equal grow it: test_grow).
        ({"views": 2}, "holds 3 views per image and a cache only grows; train --views 2"),
        ({"views": 4, "seed": 1}, "other options.*seed: cache has"),
        ({"layers": ()}, "other options.*layers: cache has"),
        ({"policy": AugPolicy(erase_prob=0)}, "other options.*policy: cache has"),
        ({"dtype": "float32"}, "other options.*dtype: cache has"),
    ],
)
def test_other_options_into_an_existing_cache_are_refused(
    cache, image_folder, tiny_weights, change, message
):
    before = target_bytes(cache)
    with pytest.raises(ProteusError, match=message):
        extract(image_folder, cache, tiny_weights, **change)
    assert target_bytes(cache) == before


def test_other_weights_or_data_are_refused(cache, image_folder, tiny_weights, tmp_path):
    import imagegen

    other = imagegen.save_teacher_weights("tiny_dinov2", tmp_path / "other.safetensors", seed=1)
    with pytest.raises(ProteusError, match="weights_sha256"):
        extract(image_folder, cache, other)
    extra = image_folder / "class0" / "extra.jpg"
    extra.write_bytes((image_folder / "class0" / "img0.jpg").read_bytes())
    with pytest.raises(ProteusError, match="dataset_fingerprint"):
        extract(image_folder, cache, tiny_weights)


def test_no_augmentation_and_float32(image_folder, tiny_weights, tmp_path):
    from proteus.common.views.records import NO_AUGMENTATION

    m = extract(
        image_folder,
        tmp_path / "c",
        tiny_weights,
        policy=NO_AUGMENTATION,
        views=1,
        dtype="float32",
        layers=(),
    )
    assert m.targets.keys() == {"cls", "patch"}
    c = Cache(tmp_path / "c")
    assert c.read("cls", np.arange(6)).dtype == np.float32
    h, w = c.images.height[0], c.images.width[0]
    side = min(h, w)  # a centred square: the whole short side
    assert c.views.crop[0].tolist() == [(h - side) // 2, (w - side) // 2, side, side]
    assert not c.views.flip.any() and (c.views.erase == 0).all()


def test_flat_folder_and_list_file(tmp_path, tiny_weights):
    import imagegen

    flat = tmp_path / "flat"
    for i in range(3):
        imagegen.save(imagegen.photo(30, 40, i), flat / f"{i}.jpg")
    m = extract(flat, tmp_path / "c1", tiny_weights, views=1)
    assert m.dataset.kind == "flat" and m.counts["views"] == 3
    listing = tmp_path / "list.txt"
    listing.write_text("flat/2.jpg\t7\n# comment\nflat/0.jpg\t3\n")
    m = extract(listing, tmp_path / "c2", tiny_weights, views=2)
    c = Cache(tmp_path / "c2")
    assert m.dataset.kind == "list" and c.images.label.tolist() == [3, 7]


def test_killed_while_laying_out_is_redone(image_folder, tiny_weights, tmp_path):
    out = tmp_path / "c"
    extract(image_folder, out, tiny_weights)
    reference = target_bytes(out)
    # What a kill during creation leaves: a root group that still says "creating".
    out2 = tmp_path / "c2"
    root = zarr.open_group(str(out2), mode="w")
    root.attrs["proteus"] = {"format_version": 1, "state": "creating"}
    (out2 / "images").mkdir()
    extract(image_folder, out2, tiny_weights)
    assert target_bytes(out2) == reference and verify_cache(out2) == []


def test_unsealed_cache_is_refused_by_readers(image_folder, tiny_weights, tmp_path):
    out = tmp_path / "c"
    extract(image_folder, out, tiny_weights)
    edit_manifest(out, state="writing")
    with pytest.raises(ProteusError, match=r"not sealed.*re-run the same `proteus extract`"):
        Cache(out)
    assert any("not sealed" in p for p in verify_cache(out))


def test_every_rank_split_gives_the_same_bytes(image_folder, tiny_weights, tmp_path):
    # Shard ownership is s % world; batch composition never depends on it. Simulate the
    # split by hand-resuming: a run that only did some shards, then the rest.
    full = tmp_path / "full"
    extract(image_folder, full, tiny_weights)
    part = tmp_path / "part"
    extract(image_folder, part, tiny_weights)
    for marker in sorted((part / "progress").glob("shard-00000[13].json")):
        marker.unlink()
    for path in part.rglob("*"):
        if path.is_file():
            path.chmod(0o644)
    edit_manifest(part, state="writing")
    extract(image_folder, part, tiny_weights)
    assert target_bytes(part) == target_bytes(full) and verify_cache(part) == []


def test_read_rejects_unknown_targets(cache):
    with pytest.raises(ProteusError, match=r"no target 'layer_7'.*cls, patch, layer_1"):
        Cache(cache).read("layer_7", np.array([0]))


def test_batch_size_does_not_change_which_views_get_which_targets(
    image_folder, tiny_weights, tmp_path
):
    a = extract(image_folder, tmp_path / "a", tiny_weights, batch_size=5)
    b = extract(image_folder, tmp_path / "b", tiny_weights, batch_size=2)
    assert a.identity() == b.identity()
    ca, cb = Cache(tmp_path / "a"), Cache(tmp_path / "b")
    ids = np.arange(18)
    np.testing.assert_allclose(
        ca.read("patch", ids).astype(np.float32),
        cb.read("patch", ids).astype(np.float32),
        atol=2e-3,
    )
