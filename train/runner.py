"""``run_train``: the train stage's entry point."""

from __future__ import annotations

from proteus.common.errors import ProteusError
from proteus.train.config import TrainConfig


def run_train(cfg: TrainConfig) -> None:
    # Tracked as the train-stage issue; fail loudly rather than pretend to train.
    raise ProteusError(
        f"proteus train is not built yet (asked to train {cfg.student} into {cfg.out}); "
        "it arrives with the train-stage issue"
    )
