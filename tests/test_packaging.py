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


def test_every_module_imports():
    """Each module by its installed name (a module only some commands reach must import too)."""
    for module in _modules():
        if module != "proteus.__main__":  # running it is the command line itself
            importlib.import_module(module)


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


# Where each folder installs (pyproject.toml's package-dir).
INSTALLED = {
    "cli": "proteus",
    "common": "proteus.common",
    "extract": "proteus.extract",
    "train": "proteus.train",
    "evaluate": "proteus.evaluate",
}
# The layer order of docs/ARCHITECTURE.md, lowest first: a module may import its own layer
# and the ones below it, never one above. The stages share a layer and never import each
# other; the command line (everything else under ``proteus``) sits on top.
LAYERS = (
    ("proteus.common.runtime",),
    ("proteus.common.storage",),
    ("proteus.common.data",),
    ("proteus.common.views",),
    ("proteus.common.cache",),
    ("proteus.common.models",),
    ("proteus.common.runs",),
    ("proteus.extract", "proteus.train", "proteus.evaluate"),
    ("proteus",),
)


def _modules() -> dict[str, Path]:
    """Every module of the package by its installed name."""
    out = {}
    for folder, package in INSTALLED.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """The proteus modules a file imports (at the top or inside functions; not the names a
    type checker alone reads under ``if TYPE_CHECKING``), with line numbers."""
    import ast

    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("proteus"):
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                name = f"{node.module}.{alias.name}"
                found.append((name if name in modules else node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found.extend((a.name, node.lineno) for a in node.names if a.name.startswith("proteus"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _layer(module: str) -> tuple[int, str]:
    """(layer index, the package of that layer the module belongs to)."""
    for index, packages in enumerate(LAYERS):
        for package in packages:
            if module == package or module.startswith(package + "."):
                return index, package
    raise AssertionError(f"{module}: in no layer")


def test_no_module_imports_a_layer_above_its_own():
    """The layer order is a rule, not a description: runtime < storage < data < views < cache
    < models < runs < the stages (extract, train, evaluate: never each other) < the CLI."""
    modules = _modules()
    offenders = []
    for module, path in modules.items():
        if module == "proteus.common":  # the package root: it installs the moved-module aliases
            continue
        layer, package = _layer(module)
        for target, line in _imports(path, modules):
            if target == "proteus.common":
                continue
            their_layer, their_package = _layer(target)
            sibling_stage = their_layer == layer and their_package != package
            if their_layer > layer or (sibling_stage and layer == len(LAYERS) - 2):
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not offenders, offenders


def test_no_import_cycles_even_through_imports_inside_functions():
    """An import inside a function must be for start-up time or an optional dependency,
    never to break a cycle between proteus modules."""
    modules = _modules()
    graph = {m: {t for t, _ in _imports(p, modules) if t in modules} for m, p in modules.items()}
    done: set[str] = set()

    def cycle_from(module: str, stack: list[str]) -> list[str] | None:
        if module in stack:
            return [*stack[stack.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph[module]):
            # A package's __init__ importing its own submodules is how packages export.
            if target.startswith(module + "."):
                continue
            found = cycle_from(target, [*stack, module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = cycle_from(module, [])
        assert cycle is None, " -> ".join(cycle)


def test_the_version_is_written_once():
    from proteus import __version__
    from proteus.common.runtime.version import __version__ as library_version

    assert __version__ == library_version
    assert '\nversion = "' not in (ROOT / "pyproject.toml").read_text()  # dynamic, read from there
