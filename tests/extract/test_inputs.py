"""Bad input never kills a long run; bad options fail at once with one line."""

from __future__ import annotations

import os

import imagegen
import numpy as np
import pytest
from click.testing import CliRunner
from extract_helpers import cli_args, extract

from proteus.app import main
from proteus.common.cache.reader import Cache
from proteus.common.cache.verify import verify_cache
from proteus.common.data.table import STATUS_FAILED, STATUS_OK, STATUS_SKIPPED


@pytest.fixture
def messy_folder(tmp_path):
    root = tmp_path / "messy"
    photo = imagegen.photo(48, 40, 1)
    imagegen.save(photo, root / "good.jpg")
    imagegen.save(photo, root / "gray.jpg", mode="L")
    imagegen.save(photo, root / "cmyk.jpg", mode="CMYK")
    imagegen.save(photo, root / "alpha.png", mode="RGBA")
    imagegen.save(imagegen.photo(3, 5, 2), root / "tiny.png")  # smaller than the output
    imagegen.save(photo, root / "with space ü.webp")
    whole = (root / "good.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) * 2 // 3])  # header fine, data cut
    (root / "zero.jpg").write_bytes(b"")
    (root / "text.png").write_text("not an image at all")
    (root / "notes.txt").write_text("not listed: no image suffix")
    return root


def test_bad_files_are_skipped_with_reasons_and_the_rest_extracted(
    messy_folder, tiny_weights, tmp_path
):
    m = extract(messy_folder, tmp_path / "c", tiny_weights, views=2)
    reasons = {item["path"]: (item["stage"], item["reason"]) for item in m.skipped}
    assert reasons.keys() == {"truncated.jpg", "zero.jpg", "text.png"}
    assert reasons["zero.jpg"][0] == "probe" and "not a readable image" in reasons["zero.jpg"][1]
    assert reasons["truncated.jpg"][0] == "render" and "decoded" in reasons["truncated.jpg"][1]
    assert m.counts["images"] == 9 and m.counts["usable_images"] == 6
    assert m.counts["skipped_images"] == 3 and m.counts["usable_views"] == 12

    c = Cache(tmp_path / "c")
    status = dict(zip(c.images.path.tolist(), c.images.status.tolist(), strict=True))
    assert status["zero.jpg"] == STATUS_SKIPPED and status["truncated.jpg"] == STATUS_FAILED
    assert status["with space ü.webp"] == STATUS_OK
    usable = c.usable_views()
    assert len(usable) == 12
    assert set(c.views.image[usable]) == {i for i, s in enumerate(c.images.status) if s == 0}
    patch = c.read("patch", np.arange(len(c.views)))
    failed_rows = c.images.status[c.views.image] == STATUS_FAILED
    assert (patch[failed_rows] == 0).all() and np.abs(patch[~failed_rows]).sum(
        axis=(1, 2)
    ).min() > 0
    assert verify_cache(tmp_path / "c") == []


def test_everything_unreadable_is_an_error(tmp_path, tiny_weights):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"")
    result = CliRunner().invoke(main, cli_args(root, tmp_path / "c", tiny_weights))
    assert result.exit_code == 1 and "none of the 1 images is readable" in result.output


def _one_line_error(args) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def test_missing_data(tmp_path, tiny_weights):
    out = _one_line_error(cli_args(tmp_path / "nowhere", tmp_path / "c", tiny_weights))
    assert "--data" in out and "nowhere" in out


def test_empty_data_folder(tmp_path, tiny_weights):
    (tmp_path / "empty").mkdir()
    assert "no images found" in _one_line_error(
        cli_args(tmp_path / "empty", tmp_path / "c", tiny_weights)
    )


def test_unwritable_output(image_folder, tmp_path, tiny_weights):
    # A path below a regular file cannot be created, even by root (CI containers run as root).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = _one_line_error(cli_args(image_folder, blocker / "c", tiny_weights))
    assert "--out" in out and "cannot write" in out


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_output(image_folder, tmp_path, tiny_weights):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        out = _one_line_error(cli_args(image_folder, locked / "c", tiny_weights))
    finally:
        locked.chmod(0o700)
    assert "--out" in out and "cannot write" in out


def test_output_folder_with_other_files_is_not_touched(image_folder, tmp_path, tiny_weights):
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    out = _one_line_error(cli_args(image_folder, other, tiny_weights))
    assert "not empty and is not a proteus cache" in out
    assert (other / "thesis.tex").read_text() == "precious"


def test_unknown_teacher(image_folder, tmp_path, tiny_weights):
    args = cli_args(image_folder, tmp_path / "c", tiny_weights)
    args[args.index("tiny_dinov2")] = "dinov9_xxl"
    assert "unknown teacher 'dinov9_xxl'" in _one_line_error(args)


def test_layer_out_of_range(image_folder, tmp_path, tiny_weights):
    args = cli_args(image_folder, tmp_path / "c", tiny_weights)
    args[args.index("--layers") + 1] = "7"
    assert "--layers 7: out of range for tiny_dinov2, which has 3 blocks" in _one_line_error(args)


@pytest.mark.parametrize(
    "aug, message",
    [
        ("flip=0", "expected NAME=VALUE"),
        ("flip_prob=2", "a probability is in [0, 1]"),
        ("crop_scale=0.5", "takes two numbers"),
        ("erase_prob=x", "takes one number"),
    ],
)
def test_bad_aug_settings(image_folder, tmp_path, tiny_weights, aug, message):
    args = cli_args(image_folder, tmp_path / "c", tiny_weights, "--aug", aug)
    assert message in _one_line_error(args)


def test_cli_summary_and_aug_settings(image_folder, tmp_path, tiny_weights):
    args = cli_args(
        image_folder,
        tmp_path / "c",
        tiny_weights,
        "--aug",
        "erase_prob=0",
        "--aug",
        "crop_scale=0.5,1",
    )
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "sealed" in result.output and "18 recorded" in result.output
    assert "per view" in result.output
    m = Cache(tmp_path / "c").manifest
    assert m.policy["erase_prob"] == 0 and m.policy["crop_scale"] == [0.5, 1.0]


def test_small_images_are_told_which_preset_suits_them(tmp_path, tiny_weights, capfd):
    # 10–12 px images rendered at the tiny teacher's 28 px: the reference views would upscale
    # every crop 2.5× or more, its 8% crops 9×.
    root = tmp_path / "small"
    for i, side in enumerate((10, 11, 11, 12)):
        imagegen.save(imagegen.photo(side, 12, i), root / f"c{i % 2}" / f"{i}.png")
    extract(root, tmp_path / "ref", tiny_weights, views=1, layers=())
    err = capfd.readouterr().err
    (line,) = [e for e in err.splitlines() if e.startswith("proteus: --data")]
    assert "median short side is 11 px" in line and "--aug-preset small" in line
    assert Cache(tmp_path / "ref").manifest.aug_preset == "reference"
    extract(root, tmp_path / "small-views", tiny_weights, views=1, layers=(), aug_preset="small")
    assert "--aug-preset" not in capfd.readouterr().err
    m = Cache(tmp_path / "small-views").manifest
    assert m.aug_preset == "small" and m.policy["crop_scale"] == [0.35, 1.0]
    assert m.policy["randaug_layers"] == 0


def test_unknown_preset_and_conflicting_view_options_are_one_line_errors(tmp_path, tiny_weights):
    base = cli_args(tmp_path, tmp_path / "c", tiny_weights)
    runner = CliRunner()
    unknown = runner.invoke(main, [*base, "--aug-preset", "tiny"])
    assert unknown.exit_code == 2 and "'tiny' is not one of 'reference', 'small', 'glyphs'" in (
        unknown.output
    )
    both = runner.invoke(main, [*base, "--aug-preset", "small", "--no-aug"])
    assert both.exit_code == 1 and "--no-aug and --aug-preset small each choose" in both.output
