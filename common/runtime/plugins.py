"""Extra teachers and students without forking: modules imported at start-up.

A module named in ``PROTEUS_PLUGINS`` (comma-separated) or exposed under the
``proteus.plugins`` entry-point group is imported before any command runs; registering
entries (``register_teacher``) at import time is all it has to do.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

from proteus.common.runtime.errors import ProteusError

ENV_VAR = "PROTEUS_PLUGINS"
ENTRY_POINT_GROUP = "proteus.plugins"


def load_plugins() -> list[str]:
    names = [n.strip() for n in os.environ.get(ENV_VAR, "").split(",") if n.strip()]
    loaded = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ProteusError(
                f"{ENV_VAR}: cannot import {name!r} ({exc}); check the name and PYTHONPATH"
            ) from exc
        loaded.append(name)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()
        loaded.append(entry.value)
    return loaded
