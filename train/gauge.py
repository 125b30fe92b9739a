"""The held-out gauge: the student scored, every --eval-every steps, on views it trained on
and on views it never saw, so overfitting to a cache's recorded views shows while it happens.

A student trained from K recorded views replays each of them epochs / K times; online
training never shows a view twice. When the loss on the views it trains on keeps falling and
the loss on views of the same images it never saw does not, the student is learning the
views, not the teacher. The sets come from the sources (``probe_sets``): a cache's trained
views, its held-out views (extract --holdout-views) and the views of its held-out images
(extract --holdout-images); online, the first view of each image and views training never
draws, scored by the teacher already in memory.

Each set holds at most GAUGE_VIEWS samples, rendered and given their targets once at start
(so a score is the student's forward alone), and is scored with the run's objective (a
seeded mask on every sample for the patch part) plus the token and patch cosines. The
scores go to log.jsonl and TensorBoard as ``gauge/<set>/<metric>``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from proteus.common.models.heads import ProteusHeads
from proteus.common.views.renderer import RenderConfig, Renderer
from proteus.train.distiller import Distiller
from proteus.train.objective import StudentOutput
from proteus.train.sources import ProbeSet, Rows, Samples, TargetSource
from proteus.train.targets import StudentTargets

GAUGE_VIEWS = 128  # samples per set: a standard error of the mean loss of a few percent
# The default --eval-every keeps the gauge at about this share of the run's time.
GAUGE_SHARE = 0.03
# What scoring one view costs, in training samples (a forward and its rendering, which the
# gauge does not overlap, against a step's two passes and backward). Measured in the
# long-schedule rows (docs/PERFORMANCE.md B10): 0.41–0.43 per view (a third was assumed before).
VIEW_COST = 0.45
PREFIX = "gauge/"


@dataclass
class _Probe:
    name: str
    pixels: torch.Tensor  # (n, 3, S, S) float16 on the CPU
    targets: list[dict[str, torch.Tensor]]  # per teacher, prepared, float16 on the CPU
    masks: torch.Tensor  # (n, N) bool: every sample masked, for the patch part


class Gauge:
    """The probe sets of a run, ready to score a :class:`Distiller`."""

    def __init__(
        self,
        sources: Sequence[TargetSource],
        rows: Rows,
        render: RenderConfig,
        prepare: StudentTargets,
        names: Sequence[tuple[str, ...]],
        num_patches: int,
        mask_ratio: float,
        seed: int,
        device: torch.device,
    ):
        sets, self.notes = sources[0].probe_sets(rows, GAUGE_VIEWS, seed)
        self.device = device
        renderer = Renderer(render)  # its own: the loader's runs in the loader's thread
        self.probes = [
            self._probe(s, sources, renderer, prepare, names, num_patches, mask_ratio, seed)
            for s in sets
        ]

    @property
    def views(self) -> int:
        return sum(len(p.pixels) for p in self.probes)

    def _probe(
        self,
        probe: ProbeSet,
        sources: Sequence[TargetSource],
        renderer: Renderer,
        prepare: StudentTargets,
        names: Sequence[tuple[str, ...]],
        num_patches: int,
        ratio: float,
        seed: int,
    ) -> _Probe:
        pixels, targets = [], []
        first = sources[0]
        step = renderer.cfg.max_batch
        samples = probe.samples
        for start in range(0, len(samples), step):
            part = _part(samples, start, start + step)
            views = first.views(part)
            chunk = renderer.render([first.encoded(int(i)) for i in views.image], views)
            decoded = [
                s.targets(s.fetch(n, part), chunk, self.device)
                for s, n in zip(sources, names, strict=True)
            ]
            prepared = prepare.prepare(decoded)
            pixels.append(chunk.cpu().half())
            targets.append([{k: v.cpu().half() for k, v in own.items()} for own in prepared])
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6A06E, len(samples)]))
        masked = round(num_patches * ratio)
        masks = np.zeros((len(samples), num_patches), bool)
        for row in masks:
            row[rng.choice(num_patches, masked, replace=False)] = True
        joined = [
            {k: torch.cat([t[i][k] for t in targets]) for k in targets[0][i]}
            for i in range(len(sources))
        ]
        return _Probe(probe.name, torch.cat(pixels), joined, torch.from_numpy(masks))

    @torch.no_grad()
    def score(self, model: Distiller, batch_size: int) -> dict[str, float]:
        """Every set's loss parts and cosines, averaged over its samples (eval mode: no drop
        path, a BatchNorm's running statistics used and left alone)."""
        was_training = model.training
        model.eval()
        try:
            return {k: v for probe in self.probes for k, v in self._score(model, probe, batch_size)}
        finally:
            model.train(was_training)

    def _score(self, model: Distiller, probe: _Probe, batch_size: int):
        totals: dict[str, float] = {}
        count = len(probe.pixels)
        for start in range(0, count, batch_size):
            stop = min(start + batch_size, count)
            images = probe.pixels[start:stop].to(self.device).float()
            masks = probe.masks[start:stop].to(self.device)
            targets = [
                {k: v[start:stop].to(self.device).float() for k, v in own.items()}
                for own in probe.targets
            ]
            out = model.passes(images, masks)
            values = {k: float(v) for k, v in model.losses_of(out, targets).items()}
            values |= _cosines(model, out, targets)
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + value * (stop - start)
        return [(f"{PREFIX}{probe.name}/{k}", v / count) for k, v in totals.items()]


def _part(samples: Samples, start: int, stop: int) -> Samples:
    cut = slice(start, stop)
    return Samples(
        samples.images[cut],
        samples.uses[cut],
        None if samples.view_ids is None else samples.view_ids[cut],
        None if samples.fresh is None else samples.fresh[cut],
    )


def _cosines(
    model: Distiller, out: StudentOutput, targets: Sequence[dict[str, torch.Tensor]]
) -> dict[str, float]:
    """Token head against the teacher's summary (clean pass); patch head against its patch
    tokens on the masked ones (masked pass): agreement's two numbers, per teacher."""
    values: dict[str, float] = {}
    several = len(targets) > 1
    heads_list = cast("list[ProteusHeads]", list(model.heads))
    for index, (heads, own) in enumerate(zip(heads_list, targets, strict=True)):
        suffix = f".t{index + 1}" if several else ""
        if heads.token_head is not None and out.clean is not None and "cls" in own:
            pred = heads.token_head(out.clean["cls"])
            values[f"token_cosine{suffix}"] = float(F.cosine_similarity(pred, own["cls"]).mean())
        if heads.patch_head is not None and out.masked_patch is not None and "patch" in own:
            mask = out.mask
            assert mask is not None  # set with the masked pass
            pred = heads.patch_head(out.masked_patch)[mask]
            want = own["patch"][: mask.shape[0]][mask]
            basis = model.coefficient_bases[index].get("patch")
            if basis is not None:  # coefficients: the cosine is the teacher units' one
                pred, want = (x @ basis.components + basis.mean for x in (pred, want))
            values[f"patch_cosine{suffix}"] = float(F.cosine_similarity(pred, want).mean())
    return values


def default_every(steps_per_epoch: int, gauge_views: int, global_batch: int) -> int:
    """A few times an epoch, but never more often than GAUGE_SHARE of the run's time
    allows: one score costs gauge_views × VIEW_COST training samples."""
    by_share = math.ceil(gauge_views * VIEW_COST / (global_batch * GAUGE_SHARE))
    return max(1, math.ceil(steps_per_epoch / 4), by_share)
