"""Probing every image's header once, in parallel, into the cache's image table."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from proteus.common.data.dataset import ImageList
from proteus.common.data.images import ImageProbe, probe_image
from proteus.common.data.table import STATUS_OK, STATUS_SKIPPED, ImageTable
from proteus.common.runtime.progress import progress_bar


def probe_images(images: ImageList, *, progress: bool = True) -> tuple[ImageTable, list[dict]]:
    """Sizes and decode route of every image; unreadable ones are skipped with a reason."""
    paths = [images.root / p for p in images.paths]
    # Header reads are I/O bound (network file systems especially): threads overlap them.
    workers = min(32, (os.cpu_count() or 1) * 4)
    with ThreadPoolExecutor(workers) as pool:
        results: list[ImageProbe] = list(
            progress_bar(
                pool.map(probe_image, paths),
                total=len(paths),
                desc="probe",
                unit="img",
                disable=not progress,
                leave=False,
            )
        )
    table = ImageTable(
        path=np.array(images.paths, dtype=str),
        label=np.asarray(images.labels, dtype=np.int64),
        height=np.array([r.height for r in results], dtype=np.int32),
        width=np.array([r.width for r in results], dtype=np.int32),
        transcode=np.array([r.transcode for r in results], dtype=bool),
        status=np.array([STATUS_SKIPPED if r.error else STATUS_OK for r in results], np.uint8),
    )
    skipped = [
        {"image": i, "path": images.paths[i], "reason": r.error}
        for i, r in enumerate(results)
        if r.error
    ]
    return table, skipped
