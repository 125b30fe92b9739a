"""The DINOv2 linear protocol, so numbers can be held against the Proteus paper's tables.

DINOv2's ``eval/linear.py`` (facebookresearch/dinov2 at b8931f7; the Proteus probing script
``eval/ImageNet_probing`` is the same code) trains many linear classifiers at once on a frozen
backbone, one per (feature set, learning rate): the class tokens of the last 1 or 4 blocks
(after the final norm), each with or without the average-pooled patch tokens of the last
block. Each iteration draws a batch of **training views** (RandomResizedCrop 224 bicubic +
horizontal flip, computed on the fly: the classifiers never see the same pixels twice),
runs the backbone once and steps every classifier: SGD with momentum 0.9, no weight decay,
cosine annealing to 0 over ``epochs × epoch_length`` = 12,500 iterations of 128 images,
learning rates from a fixed grid of 13 scaled by the global batch / 256, weights N(0, 0.01),
zero bias, all losses summed. Validation images are centre crops (resize 256, crop 224).

:class:`Dinov2Protocol` holds those defaults (``tests/evaluate/test_protocol.py`` checks each
against DINOv2's file). Two numbers come out: ``top1`` for the classifier chosen on a held-out
part of --train (a fair estimate) and ``top1_best_on_val``, the maximum over the grid on
--val, which is what DINOv2 and the paper report.

``--protocol dinov2-fast`` keeps the quick variant: features of centre crops computed once,
then every classifier trained on random batches of those frozen features.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

# dinov2/eval/linear.py, get_args_parser(): the --learning-rates default.
LEARNING_RATES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1)


@dataclass(frozen=True)
class Dinov2Protocol:
    """DINOv2's defaults (dinov2/eval/linear.py): get_args_parser's ``epochs`` 10 and
    ``epoch_length`` 1250, ``batch_size`` 128 (per process), ``learning_rates``;
    run_eval_linear's ``n_last_blocks_list`` [1, 4] and SGD(momentum=0.9, weight_decay=0);
    LinearClassifier's N(0, 0.01) weights; make_classification_train_transform's
    RandomResizedCrop(224, BICUBIC) with its default scale and a 0.5 flip."""

    epochs: int = 10
    epoch_length: int = 1250
    batch_size: int = 128
    learning_rates: tuple[float, ...] = LEARNING_RATES
    n_last_blocks: tuple[int, ...] = (1, 4)
    momentum: float = 0.9
    weight_decay: float = 0.0
    init_std: float = 0.01
    crop_scale: tuple[float, float] = (0.08, 1.0)  # torchvision RandomResizedCrop's default
    flip_prob: float = 0.5

    @property
    def iterations(self) -> int:
        return self.epochs * self.epoch_length

    def lr(self, base: float, global_batch: int) -> float:
        """dinov2 scale_lr: lr × (batch × world) / 256."""
        return base * global_batch / 256.0


DINOV2 = Dinov2Protocol()
FAST_ITERATIONS = 1000  # dinov2-fast: SGD steps per classifier on the frozen features


def feature_sets(
    blocks: list[torch.Tensor], mean_patch: torch.Tensor, n_last: Iterable[int] = (1, 4)
) -> dict[str, torch.Tensor]:
    """DINOv2's create_linear_input for each (n, avgpool): ``blocks`` are the class tokens of
    the last blocks (last block last), ``mean_patch`` the last block's average patch token.
    Models with fewer blocks than n use all they have."""
    out = {}
    for n in sorted({min(n, len(blocks)) for n in n_last}):
        tokens = torch.cat(blocks[-n:], 1)
        out[f"blocks{n}"] = tokens
        out[f"blocks{n}_avgpool"] = torch.cat([tokens, mean_patch], 1)
    return out


class Classifiers(nn.Module):
    """Every (feature set, learning rate) linear classifier, trained together."""

    def __init__(self, widths: dict[str, int], classes: int, protocol: Dinov2Protocol):
        super().__init__()
        self.keys = [(name, lr) for name in widths for lr in protocol.learning_rates]
        heads = [nn.Linear(widths[name], classes) for name, _ in self.keys]
        for head in heads:
            nn.init.normal_(head.weight, 0.0, protocol.init_std)
            nn.init.zeros_(head.bias)
        self.heads = nn.ModuleList(heads)

    def forward(self, features: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [head(features[name]) for (name, _), head in zip(self.keys, self.heads, strict=True)]


def train_classifiers(
    batches: Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]],
    widths: dict[str, int],
    classes: int,
    iterations: int,
    global_batch: int,
    protocol: Dinov2Protocol = DINOV2,
    seed: int = 0,
) -> Classifiers:
    """SGD over ``iterations`` batches of (feature sets, labels), DINOv2's optimiser and
    schedule; each classifier's lr is its grid value scaled by the global batch."""
    torch.manual_seed(seed)
    model = Classifiers(widths, classes, protocol)
    groups = [
        {"params": head.parameters(), "lr": protocol.lr(lr, global_batch)}
        for (_, lr), head in zip(model.keys, model.heads, strict=True)
    ]
    opt = torch.optim.SGD(groups, momentum=protocol.momentum, weight_decay=protocol.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations, eta_min=0)
    for _, (features, labels) in zip(range(iterations), batches, strict=False):
        logits = model(features)
        loss = sum(nn.functional.cross_entropy(out, labels) for out in logits)
        opt.zero_grad()
        loss.backward()  # type: ignore[union-attr]  # a sum of tensors is a tensor
        opt.step()
        schedule.step()
    return model


@torch.no_grad()
def accuracies(model: Classifiers, features: dict[str, torch.Tensor], labels) -> list[float]:
    labels = torch.as_tensor(labels)
    return [float((out.argmax(1) == labels).float().mean()) for out in model(features)]


def grid_result(
    model: Classifiers,
    holdout: tuple[dict[str, torch.Tensor], np.ndarray],
    val: tuple[dict[str, torch.Tensor], np.ndarray],
) -> dict[str, Any]:
    """The classifier chosen on the held-out part of --train, its --val top-1, and the best
    --val top-1 over the grid (what DINOv2 reports)."""
    chosen_on, on_val = accuracies(model, *holdout), accuracies(model, *val)
    grid: list[dict[str, Any]] = [
        {"features": name, "lr": lr, "holdout_top1": h, "top1": v}
        for (name, lr), h, v in zip(model.keys, chosen_on, on_val, strict=True)
    ]
    best = max(grid, key=lambda g: (g["holdout_top1"], -g["lr"]))
    return {
        "top1": best["top1"],
        "features": best["features"],
        "lr": best["lr"],
        "top1_best_on_val": max(g["top1"] for g in grid),
        "grid": grid,
    }


def frozen_batches(
    features: dict[str, torch.Tensor], labels: np.ndarray, batch_size: int, seed: int
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """dinov2-fast: random batches of precomputed (centre-crop) features, forever."""
    gen = torch.Generator().manual_seed(seed)
    ys = torch.as_tensor(labels).long()
    batch = min(batch_size, len(ys))
    while True:
        idx = torch.randint(len(ys), (batch,), generator=gen)
        yield {name: values[idx] for name, values in features.items()}, ys[idx]


def epochs_of(count: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Batches of row indices as DINOv2's infinite sampler draws them: each epoch a seeded
    permutation, incomplete batches dropped (``drop_last=True``)."""
    epoch = 0
    while True:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7, epoch]))
        order = rng.permutation(count)
        for start in range(0, count - batch_size + 1, batch_size):
            yield order[start : start + batch_size]
        epoch += 1


def widths_of(features: dict[str, torch.Tensor]) -> dict[str, int]:
    return {name: int(values.shape[1]) for name, values in features.items()}
