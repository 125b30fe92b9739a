"""``run_knn`` and ``run_linear``: features of --train and --val, then the probe."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from proteus.common.runtime.distributed import resolve_device
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.progress import progress_bar
from proteus.evaluate.config import ProbeConfig
from proteus.evaluate.features import FeatureSet, LabelledImages, folder_features, view_features
from proteus.evaluate.knn import knn_predict, topk_accuracy
from proteus.evaluate.linear import linear_probe
from proteus.evaluate.models import FeatureSource, load_source
from proteus.evaluate.protocol import (
    DINOV2,
    FAST_ITERATIONS,
    epochs_of,
    feature_sets,
    frozen_batches,
    grid_result,
    train_classifiers,
    widths_of,
)


def _features(cfg: ProbeConfig, blocks: int = 0) -> tuple[FeatureSource, FeatureSet, FeatureSet]:
    device = resolve_device(cfg.device)
    source = load_source(**asdict(cfg.source), blocks=blocks)

    def features(folder: Path, option: str) -> FeatureSet:
        return folder_features(
            source,
            folder,
            option=option,
            batch_size=cfg.batch_size,
            device=device,
            progress=cfg.progress,
            blocks=blocks,
        )

    train, val = features(cfg.train_dir, "--train"), features(cfg.val_dir, "--val")
    return source, train, val


def run_knn(cfg: ProbeConfig) -> dict:
    source, train, val = _features(cfg)
    classes = max(len(train.classes), int(train.labels.max()) + 1, int(val.labels.max()) + 1)
    scores = knn_predict(train.cls, train.labels, val.cls, classes, cfg.k, cfg.temperature)
    return {
        "model": source.name,
        "top1": topk_accuracy(scores, val.labels, 1),
        "top5": topk_accuracy(scores, val.labels, min(5, classes)),
        "k": cfg.k,
        "temperature": cfg.temperature,
        "train_images": len(train.labels),
        "val_images": len(val.labels),
        "skipped": train.skipped + val.skipped,
    }


def run_linear(cfg: ProbeConfig) -> dict:
    if cfg.protocol == "dinov2":
        return _run_dinov2_linear(cfg)
    if cfg.protocol == "dinov2-fast":
        return _run_dinov2_fast(cfg)
    source, train, val = _features(cfg)
    cls = linear_probe(train.cls, train.labels, val.cls, val.labels, cfg.holdout)
    both = linear_probe(
        np.concatenate([train.cls, train.mean_patch], 1),
        train.labels,
        np.concatenate([val.cls, val.mean_patch], 1),
        val.labels,
        cfg.holdout,
    )
    # The feature set is chosen like C: on the held-out part of --train, never on --val.
    name, best = max((("cls", cls), ("cls_mean_patch", both)), key=lambda kv: kv[1]["holdout_top1"])
    return {
        "model": source.name,
        "top1": best["top1"],
        "features": name,
        "cls": cls,
        "cls_mean_patch": both,
        "train_images": len(train.labels),
        "val_images": len(val.labels),
        "skipped": train.skipped + val.skipped,
    }


def _run_dinov2_linear(cfg: ProbeConfig) -> dict:
    """DINOv2's protocol: classifiers trained on fresh training views, features on the fly."""
    import torch

    device = resolve_device(cfg.device)
    source = load_source(**asdict(cfg.source), blocks=max(DINOV2.n_last_blocks))
    found = LabelledImages.scan(cfg.train_dir, "--train")
    # The held-out part of --train chooses the classifier; the rest trains them.
    order = np.random.default_rng(np.random.SeedSequence([0, 11])).permutation(len(found.rows))
    n_hold = max(1, round(len(order) * cfg.holdout))
    hold, pool = np.sort(order[:n_hold]), order[n_hold:]
    batch = cfg.batch_size
    if len(pool) < batch:
        raise ProteusError(
            f"--protocol dinov2: --train {cfg.train_dir} has {len(pool)} images to train on "
            f"(after holding out {n_hold}), fewer than its batch of {batch} (DINOv2 drops "
            "incomplete batches); lower --batch-size or use --protocol dinov2-fast"
        )
    iterations = cfg.iterations or DINOV2.iterations

    def sets(out: dict) -> dict[str, torch.Tensor]:
        return feature_sets(out["blocks"], out["patch"].mean(1), DINOV2.n_last_blocks)

    rows = (pool[b] for b in epochs_of(len(pool), batch, seed=0))
    views = view_features(source, found, rows, device=device, blocks=4, seed=0)
    bar = progress_bar(total=iterations, desc="dinov2 linear", unit="it", disable=not cfg.progress)
    first_out, first_labels = next(views)
    widths = widths_of(sets(first_out))

    def batches():
        bar.update(1)
        yield sets(first_out), first_labels
        for out, labels in views:
            bar.update(1)
            yield sets(out), labels

    classes = max(len(found.images.classes), int(found.labels.max()) + 1)
    try:
        model = train_classifiers(batches(), widths, classes, iterations, batch).to("cpu")
    finally:
        bar.close()
    holdout = _frozen(source, found, cfg, device, rows=hold)
    val = _frozen(source, cfg.val_dir, cfg, device)
    result = grid_result(model, holdout[:2], val[:2])
    return result | {
        "model": source.name,
        "protocol": "dinov2",
        "iterations": iterations,
        "batch_size": batch,
        "train_images": len(pool),
        "holdout_images": len(hold),
        "val_images": len(val[1]),
        "skipped": found.skipped + holdout[2] + val[2],
    }


def _run_dinov2_fast(cfg: ProbeConfig) -> dict:
    """The quick variant: centre-crop features once, classifiers on random batches of them."""
    source, train, val = _features(cfg, blocks=max(DINOV2.n_last_blocks))
    if train.blocks is None or val.blocks is None:  # asked for with blocks=4
        raise ProteusError("the DINOv2 protocol needs the last blocks' class tokens")
    order = np.random.default_rng(np.random.SeedSequence([0, 11])).permutation(len(train.labels))
    n_hold = max(1, round(len(order) * cfg.holdout))
    hold, fit = order[:n_hold], order[n_hold:]
    features = _sets(train)
    iterations = cfg.iterations or FAST_ITERATIONS
    batch = min(cfg.batch_size, len(fit))
    batches = frozen_batches({k: v[fit] for k, v in features.items()}, train.labels[fit], batch, 0)
    classes = max(len(train.classes), int(train.labels.max()) + 1, int(val.labels.max()) + 1)
    model = train_classifiers(batches, widths_of(features), classes, iterations, batch)
    holdout = ({k: v[hold] for k, v in features.items()}, train.labels[hold])
    result = grid_result(model, holdout, (_sets(val), val.labels))
    return result | {
        "model": source.name,
        "protocol": "dinov2-fast",
        "iterations": iterations,
        "train_images": len(fit),
        "holdout_images": len(hold),
        "val_images": len(val.labels),
        "skipped": train.skipped + val.skipped,
    }


def _sets(features: FeatureSet) -> dict:
    import torch

    blocks = [torch.from_numpy(b) for b in features.blocks or []]
    return feature_sets(blocks, torch.from_numpy(features.mean_patch), DINOV2.n_last_blocks)


def _frozen(source, folder, cfg: ProbeConfig, device, rows=None) -> tuple[dict, np.ndarray, list]:
    """Centre-crop feature sets of ``folder`` (or of those rows of it), labels, skipped."""
    found = folder_features(
        source,
        folder,
        option="--val",
        batch_size=cfg.batch_size,
        device=device,
        progress=cfg.progress,
        blocks=max(DINOV2.n_last_blocks),
        rows=rows,
    )
    return _sets(found), found.labels, found.skipped
