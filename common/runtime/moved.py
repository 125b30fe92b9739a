"""Old import paths of modules that moved in 0.3, kept working for one release.

proteus 0.3 gave ``proteus.common`` one sub-package per concept (docs/ARCHITECTURE.md). Code
written against 0.2 (plugins registering teachers and students, scripts reading runs) imports
the old paths; :class:`MovedModules` answers those imports with the module at its new path
(the very same module object, so registries and classes stay one) and a DeprecationWarning
that names the new path. The aliases go in proteus 0.4.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

REMOVED_IN = "0.4"

# Old module -> new module. An old package maps its submodules too (old.x -> new.x).
MOVED = {
    "proteus.common.errors": "proteus.common.runtime.errors",
    "proteus.common.version": "proteus.common.runtime.version",
    "proteus.common.files": "proteus.common.runtime.files",
    "proteus.common.faults": "proteus.common.runtime.faults",
    "proteus.common.progress": "proteus.common.runtime.progress",
    "proteus.common.prefetch": "proteus.common.runtime.prefetch",
    "proteus.common.distributed": "proteus.common.runtime.distributed",
    "proteus.common.plugins": "proteus.common.runtime.plugins",
    "proteus.common.objectstore": "proteus.common.storage.objectstore",
    "proteus.common.shardcache": "proteus.common.storage.shardcache",
    "proteus.common.dataset": "proteus.common.data.dataset",
    "proteus.common.tarshards": "proteus.common.data.tarshards",
    "proteus.common.images": "proteus.common.data.images",
    "proteus.common.probe": "proteus.common.data.probe",
    "proteus.common.randaugment": "proteus.common.views.randaugment",
    "proteus.common.dali_ops": "proteus.common.views.dali_ops",
    "proteus.common.renderer": "proteus.common.views.renderer",
    "proteus.extract.writer": "proteus.common.cache.writer",
    "proteus.extract.publish": "proteus.common.cache.publisher",
    "proteus.common.teachers": "proteus.common.models.teachers",
    "proteus.common.students": "proteus.common.models.students",
    "proteus.train.run_folder": "proteus.common.runs.folder",
    "proteus.train.checkpoint": "proteus.common.runs.checkpoint",
    "proteus.train.logs": "proteus.common.runs.logs",
}


def new_name(old: str) -> str | None:
    """Where the module ``old`` lives now, or None if it did not move."""
    parts = old.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in MOVED:
            return ".".join([MOVED[head], *parts[cut:]])
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.target} in proteus 0.3; the old path goes in {REMOVED_IN}",
            DeprecationWarning,
            stacklevel=2,
        )
        # The module itself, not a copy: its registries and classes stay the same objects.
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """Already executed under its new name."""


class MovedModules(importlib.abc.MetaPathFinder):
    """Consulted before the normal finders: once an old package is imported (it is the new
    package itself), the path finder would find ``old.submodule`` under the new package's
    folder and load a second copy of it under the old name."""

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith(("proteus.common.", "proteus.train.", "proteus.extract.")):
            return None
        moved = new_name(fullname)
        if moved is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(moved))


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())
