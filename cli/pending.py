"""Commands whose stage has not landed yet fail loudly instead of pretending to work."""

from __future__ import annotations

from typing import NoReturn

from proteus.common.errors import ProteusError


def not_built_yet(command: str, issue: str) -> NoReturn:
    raise ProteusError(f"`proteus {command}` is not built yet; it arrives with the {issue} issue")
