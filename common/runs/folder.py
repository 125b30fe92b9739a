"""The run folder: what ``proteus train --out RUN`` leaves, and the one place its names live.

    RUN/config.json     the options as given, the recipe and every resolved value
    RUN/checkpoint.pt   the latest checkpoint (checkpoint.py: Checkpoint)
    RUN/log.jsonl       one JSON line per step (logs.py)
    RUN/tensorboard/    the same scalars for TensorBoard, when asked for
    RUN/eval/           results of ``proteus eval … --checkpoint RUN`` (``proteus compare``)

Writers (the trainer, eval) and readers (eval, export, viz, compare, sweep) all go through
:class:`RunFolder`, so a new file is added here once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proteus.common.runs.checkpoint import CHECKPOINT, checkpoint_step
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.files import atomic_write_text


@dataclass(frozen=True)
class RunFolder:
    path: Path

    CONFIG = "config.json"
    CHECKPOINT = CHECKPOINT
    LOG = "log.jsonl"
    TENSORBOARD = "tensorboard"
    EVAL = "eval"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def log(self) -> Path:
        return self.path / self.LOG

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def eval_dir(self) -> Path:
        return self.path / self.EVAL

    def eval_result(self, kind: str) -> Path:
        """Where ``proteus eval KIND --checkpoint RUN`` keeps its result."""
        return self.eval_dir / f"{kind}.json"

    def is_run(self) -> bool:
        return self.config.is_file()

    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_file()

    def read_config(self) -> dict[str, Any]:
        if not self.is_run():
            raise ProteusError(f"{self.path}: not a training run folder (no {self.CONFIG})")
        try:
            return json.loads(self.config.read_text())
        except ValueError as exc:
            raise ProteusError(f"{self.config}: not valid JSON ({exc})") from exc

    def write_config(self, values: dict[str, Any]) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.config, json.dumps(values, indent=2) + "\n")
        except OSError as exc:
            raise ProteusError(f"--out {self.path}: cannot write ({exc.strerror or exc})") from exc

    def finished(self) -> bool:
        """Its checkpoint has reached the planned number of steps."""
        if not (self.has_checkpoint() and self.is_run()):
            return False
        total = self.read_config().get("total_steps")
        return total is not None and checkpoint_step(self.checkpoint) >= total
