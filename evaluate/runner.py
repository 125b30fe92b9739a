"""``run_knn`` and ``run_linear``: features of --train and --val, then the probe."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from proteus.common.runtime.distributed import resolve_device
from proteus.common.runtime.errors import ProteusError
from proteus.evaluate.config import ProbeConfig
from proteus.evaluate.features import FeatureSet, folder_features
from proteus.evaluate.knn import knn_predict, topk_accuracy
from proteus.evaluate.linear import linear_probe
from proteus.evaluate.models import FeatureSource, load_source
from proteus.evaluate.protocol import dinov2_linear, feature_sets


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
    import numpy as np

    if cfg.protocol == "dinov2":
        return _run_dinov2_linear(cfg)
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
    source, train, val = _features(cfg, blocks=4)
    if train.blocks is None or val.blocks is None:  # asked for with blocks=4
        raise ProteusError("the DINOv2 protocol needs the last blocks' class tokens")
    result = dinov2_linear(
        feature_sets(train.blocks, train.mean_patch),
        train.labels,
        feature_sets(val.blocks, val.mean_patch),
        val.labels,
        iterations=cfg.iterations,
        holdout=cfg.holdout,
    )
    return result | {
        "model": source.name,
        "protocol": "dinov2",
        "train_images": len(train.labels),
        "val_images": len(val.labels),
        "skipped": train.skipped + val.skipped,
    }
