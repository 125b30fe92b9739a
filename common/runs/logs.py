"""Per-step logs: JSON lines in the run folder, and TensorBoard scalars beside them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from proteus.common.runs.folder import RunFolder


class RunLog:
    def __init__(self, run: Path, start_step: int, tensorboard: bool = True):
        folder = RunFolder(run)
        self.path = folder.log
        # Steps after the checkpoint we resume from were computed by a run that died:
        # drop them so the log holds each step once.
        _truncate_after(self.path, start_step)
        # Open for the whole run (closed by close()); line-buffered so a kill loses no step.
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(folder.tensorboard), purge_step=start_step)

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    # The gauge's keys carry their own group (gauge/<set>/<metric>).
                    tag = key if key.startswith("gauge/") else f"train/{key}"
                    self._tb.add_scalar(tag, value, record["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_log(run: Path) -> list[dict[str, Any]]:
    path = RunFolder(run).log
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate_after(path: Path, start_step: int) -> None:
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] < start_step:
                keep.append(line)
        except (ValueError, KeyError):
            break  # a torn last line from a kill
    path.write_text("".join(f"{line}\n" for line in keep))
