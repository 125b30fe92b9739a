"""Held-out views and images: recorded beside the training views, never trained on."""

from __future__ import annotations

import imagegen
import numpy as np
import pytest
from extract_helpers import extract

from proteus.common.cache.describe import info_lines
from proteus.common.cache.reader import Cache
from proteus.common.cache.verify import verify_cache
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.records import HOLDOUT_VIEW
from proteus.train.sources.cache import CacheSource


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("holdout")
    data = imagegen.image_folder(root / "data", classes=2, per_class=4)
    weights = imagegen.save_teacher_weights("tiny_dinov2", root / "w.safetensors")
    extract(data, root / "plain", weights, views=2)
    extract(data, root / "held", weights, views=2, holdout_views=1, holdout_images=2)
    return root


def test_the_manifest_records_segments_and_images_and_verify_re_derives_them(world):
    held = Cache(world / "held")
    m = held.manifest
    assert m.segments == [[0, 2], [HOLDOUT_VIEW, 1]]
    assert m.holdout == {"views": 1, "images": 2}
    assert len(m.holdout_images) == 2 and len(set(m.holdout_images)) == 2
    assert m.holdout_views == 1 and m.training_segments == [[0, 2]]
    per_image = {int(i): sorted(held.views.view[held.views.image == i]) for i in range(8)}
    assert all(v == [0, 1, HOLDOUT_VIEW] for v in per_image.values())
    assert verify_cache(world / "held") == []
    said = "\n".join(info_lines(world / "held", m))
    assert "1 held-out views per image" in said and "2 images held out" in said


def test_training_views_are_the_plain_caches_and_training_never_reads_the_held_out(world):
    plain, held = Cache(world / "plain"), Cache(world / "held")
    ids = np.flatnonzero(held.views.view < HOLDOUT_VIEW)
    # The same images and view indices as the cache without held-out views, the same targets.
    np.testing.assert_array_equal(held.views.image[ids], plain.views.image)
    np.testing.assert_array_equal(held.read("cls", ids), plain.read("cls", np.arange(len(ids))))
    rows = CacheSource(held).rows(None)
    chosen = rows.view_ids.reshape(-1)
    assert (held.views.view[chosen] < HOLDOUT_VIEW).all()
    assert not np.isin(held.views.image[chosen], held.manifest.holdout_images).any()
    assert rows.view_ids.shape == (8 - 2, 2)


def test_holding_out_every_image_is_refused(world):
    with pytest.raises(ProteusError, match="--holdout-images 8"):
        extract(world / "data", world / "all", world / "w.safetensors", holdout_images=8)
