"""``run_extract``: the extract stage's entry point."""

from __future__ import annotations

from proteus.common.errors import ProteusError
from proteus.extract.config import ExtractConfig


def run_extract(cfg: ExtractConfig) -> None:
    # The stage itself is tracked as its own issue; until then the command fails loudly
    # rather than pretending to have written a cache.
    raise ProteusError(
        f"proteus extract is not built yet (asked to write {cfg.out}); "
        "it arrives with the extract-stage issue"
    )
