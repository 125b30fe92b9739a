"""Small files written so that a kill never leaves a torn one (temp file, fsync, rename), and
the YAML files users write (sweeps, suites) read with one set of errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from proteus.common.runtime.errors import ProteusError


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_yaml(path: Path) -> Any:
    """A user's YAML file, parsed; unreadable or invalid YAML is an error naming the file."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ProteusError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ProteusError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
