"""How well a student's heads predict the teacher on views it never trained on.

For each objective the student was trained with: the mean cosine similarity between head
output and cached target (per token), and the MSE (the training loss on held-out views).
Token and feature heads run on the clean view; the patch head on a masked view, scored on the
masked tokens, as in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from proteus.common.cache.reader import Cache
from proteus.common.models.grid import resize_patch_targets
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.progress import progress_bar
from proteus.common.views.renderer import RenderConfig, Renderer
from proteus.evaluate.models import load_trained_student


def run_agreement(
    checkpoint: Path,
    cache_path: Path | str,
    *,
    ema: bool | None = None,
    batch_size: int = 64,
    max_views: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    trained = load_trained_student(checkpoint, ema)
    cache = Cache(cache_path)
    m = cache.manifest
    index = trained.teacher_index(m.weights_sha256)
    if index is None:
        taught = ", ".join(t.source.teacher or "?" for t in trained.checkpoint.teachers)
        raise ProteusError(
            f"--cache {cache_path}: holds targets of another teacher ({m.teacher}, weights "
            f"{m.weights_sha256[:12]}…) than the student was distilled from ({taught}); "
            "agreement needs the same teacher"
        )
    if m.image_size != trained.student.image_size:
        raise ProteusError(
            f"--cache {cache_path}: {m.image_size}px views, the student was trained at "
            f"{trained.student.image_size}px"
        )
    ids = cache.usable_views()
    if max_views is not None and len(ids) > max_views:
        ids = np.sort(np.random.default_rng(seed).choice(ids, max_views, replace=False))
    renderer = Renderer(RenderConfig.from_manifest(m, max_batch=batch_size))
    student, heads = trained.student.to(device), trained.heads[index].to(device)
    # Heads of a --standardize run predict standardised targets: scored in teacher units.
    stats = trained.stats(index)
    restore = stats.restore if stats else (lambda _name, x: x)
    ratio = float(trained.checkpoint.config.get("mask_ratio", 0.5))
    sums: dict[str, list[float]] = {}
    for start in progress_bar(
        range(0, len(ids), batch_size),
        desc="agreement",
        unit="batch",
        disable=not progress,
        leave=False,
    ):
        batch = ids[start : start + batch_size]
        views = cache.views[batch]
        encoded = [cache.encoded(i) for i in views.image]
        images = renderer.render(encoded, views).to(device)
        t_cls = torch.from_numpy(cache.read("cls", batch)).float().to(device)
        t_patch = torch.from_numpy(cache.read("patch", batch)).float().to(device)
        t_patch = resize_patch_targets(t_patch, m.grid, student.grid)
        with torch.no_grad():
            _score(student, heads, restore, images, (t_cls, t_patch), ratio, start + seed, sums)
    if not sums:
        raise ProteusError("the checkpoint has no heads to compare")
    return {key: float(np.sum(v[0::2]) / np.sum(v[1::2])) for key, v in sums.items()} | {
        "views": len(ids),
        "teacher": m.teacher,
    }


def _score(student, heads, restore, images, targets, ratio, seed, sums) -> None:
    t_cls, t_patch = targets
    clean = student(images)
    if heads.token_head is not None:
        _add(sums, "token", restore("cls", heads.token_head(clean["cls"])), t_cls)
    if heads.fea_head is not None:
        _add(sums, "fea", restore("patch", heads.fea_head(clean["patch"])), t_patch)
    if heads.patch_head is not None:
        b, n = t_patch.shape[:2]
        generator = torch.Generator().manual_seed(seed)
        order = torch.rand(b, n, generator=generator).argsort(1)
        mask = torch.zeros(b, n, dtype=torch.bool)
        mask.scatter_(1, order[:, : max(1, round(n * ratio))], True)
        mask = mask.to(images.device)
        masked = student(images, mask=mask)["patch"]
        _add(sums, "patch", restore("patch", heads.patch_head(masked))[mask], t_patch[mask])


def _add(sums: dict[str, list[float]], name: str, pred: torch.Tensor, target: torch.Tensor):
    """Accumulate (sum, count) pairs so batches of any size average correctly."""
    pred, target = pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])
    cos = F.cosine_similarity(pred, target, dim=-1)
    mse = ((pred - target) ** 2).mean(-1)
    for key, values in ((f"{name}_cosine", cos), (f"{name}_mse", mse)):
        entry = sums.setdefault(key, [])
        entry += [float(values.sum()), float(values.numel())]
