"""The install layout: stage folders land under proteus.*, nothing generic at the top level."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_stages_import_under_the_proteus_namespace():
    for name in (
        "proteus",
        "proteus.common",
        "proteus.extract",
        "proteus.train",
        "proteus.common.teachers",
        "proteus.app",
    ):
        assert importlib.util.find_spec(name) is not None, name


def test_wheel_installs_only_the_proteus_package(tmp_path):
    # No build isolation: the venv already has setuptools, and CI needs no extra download.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"proteus"}
    # Every source module of the repository is in the wheel (a subpackage missing from
    # pyproject's package list would otherwise only fail on a user's machine).
    mapping = {
        "cli": "proteus",
        "common": "proteus/common",
        "extract": "proteus/extract",
        "train": "proteus/train",
        "evaluate": "proteus/evaluate",
    }
    for folder, target in mapping.items():
        for source in (ROOT / folder).rglob("*.py"):
            assert f"{target}/{source.relative_to(ROOT / folder).as_posix()}" in names, source
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
