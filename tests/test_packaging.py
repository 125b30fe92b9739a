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
    for module in (
        "proteus/app.py",
        "proteus/common/teachers/registry.py",
        "proteus/extract/__init__.py",
        "proteus/train/__init__.py",
    ):
        assert module in names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
