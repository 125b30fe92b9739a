"""The DINOv2 linear protocol, so numbers can be held against the Proteus paper's tables.

DINOv2's ``eval/linear.py`` trains many linear classifiers at once on frozen features, one
per (feature set, learning rate): the class tokens of the last 1 or 4 blocks (after the
final norm), each with or without the average-pooled patch tokens of the last block appended;
SGD with momentum 0.9, no weight decay, a cosine schedule, learning rates from a fixed grid
scaled by batch / 256, weights N(0, 0.01), zero bias. The paper reports the best classifier
on the validation set.

Here the features are computed once, from centre crops (DINOv2 also trains the classifiers
on random-resized-crop views, which a table of frozen features cannot), and each classifier
takes a fixed number of SGD steps on random batches (the data sets are far smaller than
ImageNet). Two numbers come out:
``top1`` for the classifier chosen on a held-out part of --train (a fair estimate) and
``top1_best_on_val``, the maximum over the grid on --val, which is what DINOv2 and the
paper report.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

# dinov2/eval/linear.py: --learning-rates default.
LEARNING_RATES = (
    1e-5,
    2e-5,
    5e-5,
    1e-4,
    2e-4,
    5e-4,
    1e-3,
    2e-3,
    5e-3,
    1e-2,
    2e-2,
    5e-2,
    0.1,
    0.2,
    0.5,
)


def feature_sets(blocks: list[np.ndarray], mean_patch: np.ndarray) -> dict[str, np.ndarray]:
    """``blocks``: class tokens of the last n blocks (n ≥ 1), each (M, D_i), last block last."""
    out = {}
    for n in sorted({1, min(4, len(blocks))}):
        tokens = np.concatenate(blocks[-n:], 1)
        out[f"blocks{n}"] = tokens
        out[f"blocks{n}_avgpool"] = np.concatenate([tokens, mean_patch], 1)
    return out


def dinov2_linear(
    train: dict[str, np.ndarray],
    train_labels: np.ndarray,
    val: dict[str, np.ndarray],
    val_labels: np.ndarray,
    *,
    iterations: int = 1000,
    batch_size: int = 1024,
    holdout: float = 0.1,
    seed: int = 0,
) -> dict:
    """Every (feature set, lr) classifier; ``train``/``val``: feature set name -> (M, F)."""
    classes = int(max(train_labels.max(), val_labels.max())) + 1
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_labels))
    n_hold = max(1, round(len(order) * holdout))
    hold, fit = order[:n_hold], order[n_hold:]
    grid: list[dict[str, Any]] = []
    for name, features in train.items():
        for lr in LEARNING_RATES:
            scaled = lr * min(batch_size, len(fit)) / 256
            on_hold = _fit(
                features[fit], train_labels[fit], classes, scaled, iterations, batch_size, seed
            )
            chosen = _accuracy(on_hold, features[hold], train_labels[hold])
            full = _fit(features, train_labels, classes, scaled, iterations, batch_size, seed)
            grid.append(
                {
                    "features": name,
                    "lr": lr,
                    "holdout_top1": chosen,
                    "top1": _accuracy(full, val[name], val_labels),
                }
            )
    best = max(grid, key=lambda g: (g["holdout_top1"], -g["lr"]))
    return {
        "top1": best["top1"],
        "features": best["features"],
        "lr": best["lr"],
        "top1_best_on_val": max(g["top1"] for g in grid),
        "grid": grid,
    }


def _fit(x, y, classes, lr, iterations, batch_size, seed) -> torch.nn.Linear:
    """SGD on random batches for a fixed number of iterations (DINOv2: 12,500 on ImageNet,
    10 epochs); a cosine schedule over them."""
    gen = torch.Generator().manual_seed(seed)
    xs, ys = torch.from_numpy(np.ascontiguousarray(x)).float(), torch.from_numpy(y).long()
    head = torch.nn.Linear(xs.shape[1], classes)
    torch.nn.init.normal_(head.weight, 0.0, 0.01, generator=gen)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
    batch = min(batch_size, len(xs))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / iterations))
    )
    for _ in range(iterations):
        idx = torch.randint(len(xs), (batch,), generator=gen)
        loss = torch.nn.functional.cross_entropy(head(xs[idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return head


@torch.no_grad()
def _accuracy(head: torch.nn.Linear, x: np.ndarray, y: np.ndarray) -> float:
    pred = head(torch.from_numpy(np.ascontiguousarray(x)).float()).argmax(1).numpy()
    return float((pred == y).mean())
