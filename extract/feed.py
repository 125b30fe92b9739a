"""Rendered batches for the shards a process owns, with bad images isolated, not fatal.

Batches never cross a shard boundary, so every shard sees the same batch composition
however the work is split or resumed, and CPU targets stay byte-identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import UnidentifiedImageError

from proteus.common.data.images import read_encoded
from proteus.common.data.table import ImageTable
from proteus.common.runtime.faults import failpoint
from proteus.common.views.records import ViewTable
from proteus.common.views.renderer import Renderer


@dataclass
class Batch:
    shard: int
    start: int  # first view id of the batch
    stop: int  # one past the last view id of the batch
    last: bool  # the shard's final batch
    image_ids: np.ndarray  # (B,) image index of each row
    pixels: torch.Tensor  # (B, 3, S, S); zeros for failed rows
    failed: dict[int, str] = field(default_factory=dict)  # row in batch -> reason


class ShardFeed:
    def __init__(
        self,
        renderer: Renderer,
        images: ImageTable,
        views: ViewTable,
        data_root: Path,
        batch_size: int,
        shard_views: int,
    ):
        self.renderer = renderer
        self.images = images
        self.views = views
        self.data_root = Path(data_root)
        self.batch_size = batch_size
        self.shard_views = shard_views
        self._io = ThreadPoolExecutor(8, thread_name_prefix="proteus-read")

    def batches(self, shards: list[int], carried: int = 0) -> Iterator[Batch]:
        """Each shard's views in batches; views below ``carried`` are left out (a grown
        cache's old rows, whose stored bytes the shard carries)."""
        for shard in shards:
            begin = shard * self.shard_views
            first, end = max(begin, carried), min(begin + self.shard_views, len(self.views))
            for start in range(first, end, self.batch_size):
                stop = min(start + self.batch_size, end)
                pixels, failed = self.render(np.arange(start, stop))
                failpoint("render")
                image_ids = self.views.image[start:stop]
                yield Batch(shard, start, stop, stop == end, image_ids, pixels, failed)

    def render(self, ids: np.ndarray) -> tuple[torch.Tensor, dict[int, str]]:
        views = self.views[ids]
        loaded = list(self._io.map(self._load, views.image.tolist()))
        failed = {row: item for row, item in enumerate(loaded) if isinstance(item, str)}
        good = [row for row in range(len(ids)) if row not in failed]
        size = self.renderer.cfg.image_size
        pixels = torch.zeros(len(ids), 3, size, size)
        if good:
            encoded = [item for item in loaded if not isinstance(item, str)]  # rows of good
            out, bad = self.renderer.render_tolerant(encoded, views[np.array(good)])
            for k, reason in bad.items():  # zero pixels stay for those; the shard records why
                failed[good[k]] = f"could not be decoded ({reason})"
            rendered = [row for k, row in enumerate(good) if k not in bad]
            if out is not None:
                pixels = pixels.to(out.device)
                pixels[torch.as_tensor(rendered, device=out.device)] = out
        return pixels, failed

    def _load(self, image: int) -> np.ndarray | str:
        path = self.data_root / str(self.images.path[image])
        try:
            return read_encoded(path, bool(self.images.transcode[image]))
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            return f"could not be read ({exc.__class__.__name__}: {str(exc)[:150]})"
