"""Teacher outputs → stored arrays: encoding on the teacher's device, shard assembly, and
fitting the PCA bases of a cache from a sample of its own views."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from proteus.common.cache.codec import PCAAccumulator, PCABasis, TargetCodec, fidelity, rotated
from proteus.common.cache.layout import shard_bounds
from proteus.common.cache.manifest import Manifest
from proteus.common.cache.stats import StatsSums
from proteus.common.data.table import ImageTable
from proteus.common.models.teachers import Teacher
from proteus.common.runtime.progress import progress_bar
from proteus.extract.feed import Batch, ShardFeed


def forward(teacher: Teacher, pixels: torch.Tensor, precision: str) -> dict[str, torch.Tensor]:
    """The teacher's targets by name: cls, patch, layer_<i>."""
    with torch.autocast(pixels.device.type, torch.bfloat16, enabled=precision == "bfloat16"):
        out = teacher(pixels)
    named = {"cls": out["cls"], "patch": out["patch"]}
    if "registers" in out:
        named["registers"] = out["registers"]
    return named | {f"layer_{i}": t for i, t in out["layers"].items()}


class ShardEncoder:
    """Applies each target's codec (cast, int8 with per-token scale, PCA) where it ran."""

    def __init__(self, codecs: dict[str, TargetCodec], device: torch.device):
        """``codecs``: every target's codec, fitted where it needs to be (the writer's)."""
        self.codecs = {name: codec.to(device) for name, codec in codecs.items()}

    def encode(
        self, named: dict[str, torch.Tensor], failed: dict[int, str], stats: StatsSums
    ) -> dict:
        """The stored arrays of a batch; ``stats`` gathers the usable views' statistics."""
        bad = sorted(failed)
        good = [row for row in range(len(next(iter(named.values())))) if row not in failed]
        stored: dict[str, np.ndarray] = {}
        for name, values in named.items():
            values = values.float()
            stats.update(name, values[good] if bad else values)
            if bad:  # no targets from a picture we never saw
                values[torch.as_tensor(bad, device=values.device)] = 0
            encoded = self.codecs[name].encode(values)
            if bad:
                for array in encoded.values():
                    array[torch.as_tensor(bad, device=array.device)] = 0
            stored |= {k: v.cpu().numpy() for k, v in encoded.items()}
        return stored


class ShardBuffer:
    """One shard's stored arrays, assembled in memory and written whole."""

    def __init__(self, manifest: Manifest, index: int):
        self.index = index
        self.start, stop = shard_bounds(manifest, index) if index >= 0 else (0, 0)
        self.arrays = {
            name: np.zeros((stop - self.start, *spec["shape"]), spec["dtype"])
            for name, spec in manifest.arrays.items()
        }
        self.failed: dict[int, dict] = {}
        self.stats = StatsSums()

    def add(self, batch: Batch, stored: dict[str, np.ndarray], images: ImageTable) -> None:
        rows = slice(batch.start - self.start, batch.stop - self.start)
        for name, values in stored.items():
            self.arrays[name][rows] = values
        for row, reason in batch.failed.items():
            image = int(batch.image_ids[row])
            self.failed.setdefault(
                image, {"image": image, "path": str(images.path[image]), "reason": reason}
            )

    def carry(self, stored: dict[str, np.ndarray]) -> None:
        """The shard's first rows as they are stored already (a grown cache's old views)."""
        for name, values in stored.items():
            self.arrays[name][: len(values)] = values

    def failed_images(self) -> list[dict]:
        return [self.failed[i] for i in sorted(self.failed)]


# Views set aside from the PCA fit to measure each codec on (at most; a fifth of a small
# cache): what `cache info` reports as its held-out fidelity.
FIDELITY_VIEWS = 256


def fit_bases(
    teacher: Teacher,
    feed: ShardFeed,
    codecs: dict[str, TargetCodec],
    sample: int,
    seed: int,
    precision: str,
    progress: bool = True,
) -> tuple[dict[str, PCABasis], dict[str, dict]]:
    """PCA of every PCA codec's tokens over a seeded sample of views (streamed: only D×D
    sums are kept, so the sample size costs time, not memory), rotated for int8 storage
    (codec.rotated), then each codec's fidelity on views the fit never saw."""
    names = [name for name, codec in codecs.items() if codec.pca_k]
    views = len(feed.views)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCA]))
    order = rng.permutation(views)
    held = min(FIDELITY_VIEWS, views // 5)
    heldout, ids = np.sort(order[:held]), np.sort(order[held:][:sample])
    sums = {name: PCAAccumulator() for name in names}
    for named in _teacher_tokens(teacher, feed, ids, names, precision, "fit PCA", progress):
        for name in names:
            sums[name].update(named[name])
    bases: dict[str, PCABasis] = {}
    info: dict[str, dict[str, Any]] = {}
    for name in names:
        codec = codecs[name]
        basis, kept = sums[name].basis(codec.pca_k or 0)
        info[name] = {"k": codec.pca_k, "variance_kept": kept, "sample_views": len(ids)}
        if codec.kind == "int8":
            rotation_seed = int(np.random.SeedSequence([seed, 0x207]).generate_state(1)[0])
            basis, kind = rotated(basis, rotation_seed)
            info[name]["rotation"] = {"kind": kind, "seed": rotation_seed}
        bases[name] = basis
    if held:
        tokens: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        for named in _teacher_tokens(teacher, feed, heldout, names, precision, "codec", progress):
            for name in names:
                tokens[name].append(named[name].cpu())
        for name in names:
            fitted = codecs[name].fit(bases[name])
            info[name]["heldout"] = fidelity(fitted, torch.cat(tokens[name])) | {"views": held}
    return bases, info


def _teacher_tokens(teacher, feed: ShardFeed, ids, names, precision, desc, progress):
    """Per batch of ``ids``: each named target's tokens as (M, D) float32 (failed views
    left out)."""
    device = next(teacher.parameters()).device
    for start in progress_bar(
        range(0, len(ids), feed.batch_size),
        desc=desc,
        unit="batch",
        leave=False,
        disable=not progress,
    ):
        batch = ids[start : start + feed.batch_size]
        pixels, failed = feed.render(batch)
        keep = [r for r in range(len(batch)) if r not in failed]
        named = forward(teacher, pixels.to(device), precision)
        out = {}
        for name in names:
            tokens = named[name][keep].float()
            out[name] = tokens.reshape(-1, tokens.shape[-1])
        yield out
