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
        "proteus.common.models.teachers",
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


LIBRARY = ("common", "extract", "train", "evaluate")
CLI_MODULES = {p.stem for p in (ROOT / "cli").glob("*.py")} - {"__init__", "__main__"}


def test_the_library_never_imports_the_command_line():
    """The CLI is a thin layer over the library; nothing below it may reach back up."""
    import ast

    cli = {f"proteus.{name}" for name in CLI_MODULES} | {"proteus.commands"}
    offenders = []
    for folder in LIBRARY:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                if any(n == c or n.startswith(c + ".") for n in names for c in cli):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                if isinstance(node, ast.ImportFrom) and node.module == "proteus":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} (from proteus)")
    assert not offenders, offenders


def test_the_version_is_written_once():
    from proteus import __version__
    from proteus.common.runtime.version import __version__ as library_version

    assert __version__ == library_version
    assert '\nversion = "' not in (ROOT / "pyproject.toml").read_text()  # dynamic, read from there
