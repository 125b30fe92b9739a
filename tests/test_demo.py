"""`proteus demo`: the bundled digits, and the whole pipeline on a small folder."""

from __future__ import annotations

import json

import imagegen
import numpy as np
from click.testing import CliRunner
from PIL import Image

from proteus.app import main
from proteus.demo_pipeline import split_lists, write_digits


def test_bundled_digits_are_written_as_a_labelled_split(tmp_path):
    write_digits(tmp_path, size=16)
    train = sorted((tmp_path / "train").rglob("*.png"))
    val = sorted((tmp_path / "val").rglob("*.png"))
    assert len(train) + len(val) == 1797 and abs(len(val) - 0.2 * 1797) < 10
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == [str(d) for d in range(10)]
    assert not {p.name for p in train} & {p.name for p in val}
    img = Image.open(train[0])
    assert img.size == (16, 16) and img.mode == "L"


def test_single_folder_is_split_per_class(tmp_path):
    data = imagegen.tinted_folder(tmp_path / "data", classes=3, per_class=5)
    train, val = split_lists(data, tmp_path / "out")
    rows = {name: path.read_text().splitlines() for name, path in (("t", train), ("v", val))}
    assert len(rows["t"]) == 12 and len(rows["v"]) == 3
    labels = sorted(int(line.split("\t")[1]) for line in rows["v"])
    assert labels == [0, 1, 2]


def test_demo_runs_end_to_end_and_reruns(tmp_path):
    data = imagegen.tinted_folder(tmp_path / "data", classes=3, per_class=8)
    args = [
        "demo",
        "--data",
        str(data),
        "--teacher",
        "effnet_lite0",
        "--student",
        "tiny_vit16",
        "--image-size",
        "64",
        "--steps",
        "4",
        "--out",
        str(tmp_path / "demo"),
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for row in ("teacher", "distilled student", "random-init student"):
        assert row in result.output
    summary = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert set(summary["knn_top1"]) == {"teacher", "distilled student", "random-init student"}
    assert all(0 <= v <= 1 for v in summary["knn_top1"].values())
    assert summary["knn_top1"]["teacher"] > 0.5  # colour separates the classes for a real CNN
    for picture in ("pca.png", "losses.png"):
        assert (tmp_path / "demo" / picture).stat().st_size > 2000
    again = CliRunner().invoke(main, args)  # resumes: cache sealed, run finished
    assert again.exit_code == 0, again.output
    assert np.isclose(
        json.loads((tmp_path / "demo" / "results.json").read_text())["knn_top1"]["teacher"],
        summary["knn_top1"]["teacher"],
    )
