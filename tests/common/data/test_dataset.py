"""Image discovery: ImageFolder, flat folders and list files, in a stable order."""

from __future__ import annotations

import os

import pytest

from proteus.common.data.dataset import scan_images
from proteus.common.runtime.errors import ProteusError


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_imagefolder_labels_follow_sorted_class_names(tmp_path):
    for rel in [
        "dog/b.jpg",
        "cat/z.png",
        "cat/a.JPEG",
        "dog/sub/c.jpg",
        "cat/notes.txt",
        "cat/.hidden.jpg",
        "empty_class/readme.md",
    ]:
        _touch(tmp_path / rel)
    images = scan_images(tmp_path)
    assert images.kind == "imagefolder" and images.classes == ("cat", "dog")
    assert images.paths == ("cat/a.JPEG", "cat/z.png", "dog/b.jpg", "dog/sub/c.jpg")
    assert images.labels.tolist() == [0, 0, 1, 1]


def test_flat_folder_has_no_labels(tmp_path):
    for name in ["b.jpg", "a.png", "c d é.jpg"]:
        _touch(tmp_path / name)
    images = scan_images(tmp_path)
    assert images.kind == "flat" and images.paths == ("a.png", "b.jpg", "c d é.jpg")
    assert images.labels.tolist() == [-1, -1, -1]


def test_list_file(tmp_path):
    _touch(tmp_path / "imgs/a.jpg")
    (tmp_path / "list.txt").write_text("# training images\nimgs/a.jpg\t3\n\n/abs/b.png\n")
    images = scan_images(tmp_path / "list.txt")
    assert images.kind == "list" and images.root == tmp_path
    assert images.paths == ("/abs/b.png", "imgs/a.jpg") and images.labels.tolist() == [-1, 3]


def test_bad_label_in_list_file_names_the_line(tmp_path):
    (tmp_path / "list.txt").write_text("a.jpg\tcat\n")
    with pytest.raises(ProteusError, match=r"line 1.*not an integer"):
        scan_images(tmp_path / "list.txt")


def test_order_and_fingerprint_are_stable_and_sensitive(tmp_path):
    for name in ["c/3.jpg", "a/1.jpg", "b/2.jpg"]:
        _touch(tmp_path / name)
    first = scan_images(tmp_path)
    before = first.fingerprint()
    assert first.paths == scan_images(tmp_path).paths
    assert before == scan_images(tmp_path).fingerprint()
    _touch(tmp_path / "b/2.jpg", b"a different image")
    assert scan_images(tmp_path).fingerprint() != before


def test_symlink_loop_does_not_hang(tmp_path):
    _touch(tmp_path / "cls/a.jpg")
    os.symlink(tmp_path / "cls", tmp_path / "cls" / "loop")
    assert scan_images(tmp_path).paths == ("cls/a.jpg",)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "no images found"),
        (lambda p: _touch(p / "notes.txt"), "no images found"),
        (lambda p: (_touch(p / "a.jpg"), _touch(p / "cls/b.jpg")), "both at the top level"),
    ],
)
def test_unusable_folders_are_clear_errors(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(ProteusError, match=message):
        scan_images(tmp_path)


def test_missing_data(tmp_path):
    with pytest.raises(ProteusError, match="no such folder or list file"):
        scan_images(tmp_path / "nope")
