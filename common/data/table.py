"""The image table: one row per image of the data, and whether its views count.

The probe makes it (``probe.py``), a cache stores it (``images/`` in the cache layout), online
training holds it in memory; all three read these columns and statuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

STATUS_OK, STATUS_SKIPPED, STATUS_FAILED = 0, 1, 2  # failed = header fine, DALI could not decode


@dataclass
class ImageTable:
    """One row per image found in the data; ``status`` says whether its views count."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("path", "label", "height", "width", "transcode", "status")

    path: np.ndarray  # (N,) str, relative to the manifest's dataset root
    label: np.ndarray  # (N,) int64, -1 without labels
    height: np.ndarray  # (N,) int32, after EXIF orientation
    width: np.ndarray  # (N,) int32
    transcode: np.ndarray  # (N,) bool: Pillow re-encodes it to PNG before DALI decodes it
    status: np.ndarray  # (N,) uint8: STATUS_OK / STATUS_SKIPPED / STATUS_FAILED

    def __len__(self) -> int:
        return len(self.path)

    def columns(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.COLUMNS}
