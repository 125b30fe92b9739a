"""A damaged cache: `cache verify` names the damaged part, and `train` refuses to use it
instead of training on garbage."""

from __future__ import annotations

import pytest
from extract_helpers import edit_manifest, tiny_cache, writable_copy
from train_helpers import train

from proteus.common.cache.verify import verify_cache
from proteus.common.runtime.errors import ProteusError


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    return tiny_cache(tmp_path_factory.mktemp("corrupt")) / "cache"


@pytest.fixture
def cache(sealed, tmp_path):
    return writable_copy(sealed, tmp_path / "cache")


def _flip_byte(path, offset=64):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_in_a_target_shard(cache, tmp_path):
    _flip_byte(cache / "targets" / "patch" / "c" / "0" / "0" / "0")
    assert verify_cache(cache)[0].startswith("targets/patch shard 0: unreadable")
    with pytest.raises(
        ProteusError,
        match=r"targets/patch shard 0 is damaged \(chunk \d+ fails its crc32c\); refusing to train",
    ):
        train(cache, tmp_path / "run", max_steps=30)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_deleted_shard_file(cache, tmp_path):
    (cache / "targets" / "cls" / "c" / "1" / "0").unlink()
    assert "targets/cls shard 1: file missing" in verify_cache(cache, read_targets=False)
    with pytest.raises(ProteusError, match="targets/cls shard 1 is missing"):
        train(cache, tmp_path / "run")


def test_hand_edited_manifest(cache, tmp_path):
    edit_manifest(cache, mean=[0.5, 0.5, 0.5])  # would render other pixels
    assert verify_cache(cache)[0].startswith("manifest: changed after sealing")
    with pytest.raises(ProteusError, match="changed after sealing"):
        train(cache, tmp_path / "run")


def test_deleted_seal_record(cache, tmp_path):
    (cache / "progress" / "seal.json").unlink()
    with pytest.raises(ProteusError, match="missing or unreadable seal record"):
        train(cache, tmp_path / "run")


def test_a_damaged_unused_target_does_not_block_a_run_that_never_reads_it(cache, tmp_path):
    _flip_byte(cache / "targets" / "layer_1" / "c" / "0" / "0" / "0")
    train(cache, tmp_path / "run", max_steps=2)  # layer_1 is not read without hints
    assert verify_cache(cache)  # but verify still reports it
