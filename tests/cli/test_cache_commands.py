"""`proteus cache info` and `proteus cache verify`, on sound and on damaged caches."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from extract_helpers import edit_manifest, extract, writable_copy

from proteus.app import main


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    import imagegen

    root = tmp_path_factory.mktemp("cachecli")
    data = imagegen.image_folder(root / "data")
    weights = imagegen.save_teacher_weights("tiny_dinov2", root / "w.safetensors")
    extract(data, root / "cache", weights)
    return root / "cache"


@pytest.fixture
def damaged(sealed, tmp_path):
    return writable_copy(sealed, tmp_path / "copy")


def _verify(path, *extra):
    return CliRunner().invoke(main, ["cache", "verify", str(path), *extra])


def test_info_prints_the_manifest(sealed):
    result = CliRunner().invoke(main, ["cache", "info", str(sealed)])
    assert result.exit_code == 0, result.output
    expected = (
        "state      sealed",
        "tiny_dinov2 [dinov2] dim 32, patch 14, grid 2×2",
        "K=3 per image, seed 0",
        "layer_1 5×32",
        "float16",
        "6 usable",
        "18 recorded",
        "sha256 ",
        "RandAugment rand-m9-mstd0.5-inc1: 2 layers",
        "erasing p 0.25 (pixel)",
        "ops revision 2",
    )
    for text in expected:
        assert text in result.output, text


def test_verify_passes_on_a_sound_cache(sealed):
    result = _verify(sealed)
    assert result.exit_code == 0 and "OK  " in result.output and "DAMAGED" not in result.output
    assert _verify(sealed, "--quick").exit_code == 0


def test_flipped_byte_in_a_shard_is_named(damaged):
    shard = damaged / "targets" / "patch" / "c" / "2" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[40] ^= 0x10
    shard.write_bytes(bytes(data))
    result = _verify(damaged)
    assert result.exit_code == 1
    assert "DAMAGED  targets/patch shard 2: unreadable" in result.output
    assert "Digest mismatch" in result.output
    assert _verify(damaged, "--quick").exit_code == 0  # only the full read sees bytes


def test_deleted_shard_is_named(damaged):
    (damaged / "targets" / "cls" / "c" / "1" / "0").unlink()
    result = _verify(damaged, "--quick")
    assert result.exit_code == 1 and "targets/cls shard 1: file missing" in result.output


def test_deleted_progress_marker_is_named(damaged):
    (damaged / "progress" / "shard-000003.json").unlink()
    result = _verify(damaged)
    assert result.exit_code == 1 and "1 shard(s) never finished (first: 3)" in result.output


def test_hand_edited_manifest_is_named(damaged):
    edit_manifest(damaged, image_size=56)
    result = _verify(damaged)
    assert result.exit_code == 1 and "manifest: changed after sealing" in result.output


def test_edited_view_table_is_named(damaged):
    import zarr

    flips = zarr.open_array(str(damaged / "views" / "flip"), mode="r+")
    flips[0] = not flips[0]
    result = _verify(damaged, "--quick")
    assert "views/flip: differs from the recorded policy and seed (row 0)" in result.output


def test_not_a_cache(tmp_path):
    result = _verify(tmp_path / "nothing")
    assert result.exit_code == 1 and "no such cache folder" in result.output
    (tmp_path / "plain").mkdir()
    result = CliRunner().invoke(main, ["cache", "info", str(tmp_path / "plain")])
    assert result.exit_code == 1 and "not a proteus cache" in result.output
    assert result.output.count("\n") == 1


def test_info_names_the_renderer_revision_of_a_cache_from_0_2():
    fixture = Path(__file__).parents[1] / "fixtures" / "v0_2" / "cache"
    result = CliRunner().invoke(main, ["cache", "info", str(fixture)])
    assert result.exit_code == 0, result.output
    assert "ops revision 1 (recorded before revisions)" in result.output
