"""The fast shard reader returns exactly the bytes zarr-python (and tensorstore) decode."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from proteus.common.cache.layout import create_target
from proteus.common.cache.shards import ShardedTargets
from proteus.common.runtime.errors import ProteusError

VIEWS, SHAPE, SHARD = 23, (5, 7), 4  # the last shard is partial


@pytest.fixture(params=["float16", "float32"])
def array(tmp_path, request):
    root = zarr.open_group(str(tmp_path / "cache"), mode="w", zarr_format=3)
    arr = create_target(root, "patch", VIEWS, SHAPE, request.param, SHARD)
    values = np.random.default_rng(0).normal(size=(VIEWS, *SHAPE)).astype(request.param)
    for start in range(0, VIEWS, SHARD):  # whole shards, as the writer does
        arr[start : start + SHARD] = values[start : start + SHARD]
    return tmp_path / "cache", values, request.param


@pytest.mark.parametrize("verify", [True, False])
def test_same_bytes_as_zarr_python_in_any_order(array, verify):
    path, values, dtype = array
    reader = ShardedTargets(path, "patch", VIEWS, SHAPE, dtype, SHARD, verify=verify)
    ids = np.array([22, 0, 5, 5, 21, 3, 12, 20])
    got = reader.read(ids)
    reference = zarr.open_array(str(path / "targets" / "patch"), mode="r").oindex[ids]
    assert got.dtype == np.dtype(dtype) and got.tobytes() == np.asarray(reference).tobytes()
    np.testing.assert_array_equal(got, values[ids])
    assert reader.read(np.array([], np.int64)).shape == (0, *SHAPE)


def test_out_of_range_ids(array):
    path, _, dtype = array
    with pytest.raises(IndexError):
        ShardedTargets(path, "patch", VIEWS, SHAPE, dtype, SHARD).read(np.array([VIEWS]))


def test_a_flipped_byte_and_a_torn_index_are_caught(array):
    path, _, dtype = array
    shard = path / "targets" / "patch" / "c" / "1" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[3] ^= 0x40  # inside the first stored chunk
    shard.write_bytes(bytes(data))
    reader = ShardedTargets(path, "patch", VIEWS, SHAPE, dtype, SHARD)
    with pytest.raises(ProteusError, match=r"shard 1 is damaged .*crc32c"):
        reader.read(np.arange(4, 8))
    other = path / "targets" / "patch" / "c" / "2" / "0" / "0"
    other.write_bytes(other.read_bytes()[:-8])  # index cut short
    with pytest.raises(ProteusError, match="shard 2 is damaged"):
        ShardedTargets(path, "patch", VIEWS, SHAPE, dtype, SHARD).read(np.array([9]))
