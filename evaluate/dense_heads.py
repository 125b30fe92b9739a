"""DINOv2's linear dense probes: the heads, their losses and their metrics.

- :class:`SegHead`: DINOv2's ``BNHead`` for ADE20K: the chosen blocks' patch maps resized to
  the first one's grid and concatenated ("resize_concat"), BatchNorm, a 1 × 1 convolution to
  the classes; the logits are upsampled bilinearly to the label map before the loss.
- :class:`DepthHead`: DINOv2's linear depth head for NYU-Depth v2: each block's patch map with
  its class token concatenated to every location, upsampled 4 ×, a 1 × 1 convolution to 256
  bins spaced uniformly between the minimum and maximum depth, and Bhat et al.'s (AdaBins)
  "linear" normalisation: ReLU, + 0.1, divided by the sum, the depth is the bins' expectation.
  No BatchNorm: DINOv2's depth head has none (``norm_cfg=None``).
- Losses: cross-entropy with the ignore index; the scale-invariant log loss (SigLoss, with
  DINOv2's warm-up: the variance term joins after ``SIG_WARMUP`` iterations) plus 0.5 × the
  gradient-matching loss of the log depths.
- Metrics: mIoU over the classes present in the labels or the predictions (mmseg's nanmean),
  pixel accuracy; RMSE, AbsRel and δ1 per image, averaged over images (the depth toolbox's).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SIG_WARMUP = 100  # iterations of SigLoss without its variance term (DINOv2's warm_up_iter)
SIG_LAMBDA = 0.85  # Dg = var(g) + (1 − λ) mean(g)²: the 0.15 of Eigen et al.
GRADIENT_WEIGHT = 0.5


def resize_concat(maps: list[torch.Tensor]) -> torch.Tensor:
    """Every map resized (bilinear) to the first one's grid, concatenated on channels."""
    size = maps[0].shape[-2:]
    same = [m if m.shape[-2:] == size else _resize(m, size) for m in maps]
    return torch.cat(same, 1)


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class SegHead(nn.Module):
    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, classes, kernel_size=1)
        nn.init.normal_(self.conv.weight, std=0.01)  # mmseg's init of conv_seg
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, maps: list[torch.Tensor], size) -> torch.Tensor:
        """Logits (B, classes, *size)."""
        return _resize(self.conv(self.bn(resize_concat(maps))), size)


class DepthHead(nn.Module):
    def __init__(
        self,
        channels: int,
        min_depth: float,
        max_depth: float,
        bins: int = 256,
        upsample: int = 4,
    ):
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(channels, bins, kernel_size=1)
        self.register_buffer("bins", torch.linspace(min_depth, max_depth, bins))

    def forward(self, blocks: list[tuple[torch.Tensor, torch.Tensor]], size) -> torch.Tensor:
        """Depth in metres (B, 1, *size) from (patch map, class token) per block."""
        maps = [
            torch.cat([m, c[:, :, None, None].expand(-1, -1, *m.shape[-2:])], 1) for m, c in blocks
        ]
        x = resize_concat(maps)
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=False)
        return _resize(self.expectation(self.conv(x)), size)

    def expectation(self, logits: torch.Tensor) -> torch.Tensor:
        """Bhat et al.'s linear normalisation over the bins, then the expected depth."""
        weights = torch.relu(logits) + 0.1
        weights = weights / weights.sum(1, keepdim=True)
        return torch.einsum("bkhw,k->bhw", weights, self.bins).unsqueeze(1)


def seg_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    return F.cross_entropy(logits, labels, ignore_index=ignore_index)


def depth_loss(
    pred: torch.Tensor, target: torch.Tensor, iteration: int, eps: float = 1e-3
) -> torch.Tensor:
    """SigLoss + 0.5 × gradient loss over valid pixels (target > 0); (B, 1, H, W) each."""
    valid = target > 0
    if not valid.any():
        return pred.sum() * 0.0
    log_diff = torch.log(pred.clamp_min(eps)) - torch.log(target.clamp_min(eps))
    g = log_diff[valid]
    dg = (1 - SIG_LAMBDA) * g.mean() ** 2
    if iteration >= SIG_WARMUP and g.numel() > 1:
        dg = dg + g.var(unbiased=False)
    sig = torch.sqrt(dg.clamp_min(1e-12))
    return sig + GRADIENT_WEIGHT * gradient_loss(log_diff, valid)


def gradient_loss(log_diff: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean |∂x| + |∂y| of the log-depth error where both neighbours are valid."""
    total, count = log_diff.new_zeros(()), 0
    for dim in (-1, -2):
        n = log_diff.shape[dim]
        first, second = (slice(1, n), slice(0, n - 1))
        index = [slice(None)] * log_diff.ndim
        a, b = list(index), list(index)
        a[dim], b[dim] = first, second
        both = valid[tuple(a)] & valid[tuple(b)]
        if both.any():
            total = total + (log_diff[tuple(a)] - log_diff[tuple(b)]).abs()[both].sum()
            count += int(both.sum())
    return total / max(count, 1)


class SegMetric:
    """Intersections and unions per class over a whole split (mmseg's mIoU)."""

    def __init__(self, classes: int, ignore_index: int):
        self.classes, self.ignore_index = classes, ignore_index
        self.intersection = np.zeros(classes, np.int64)
        self.union = np.zeros(classes, np.int64)
        self.labelled = np.zeros(classes, np.int64)

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        keep = label != self.ignore_index
        p, t = pred[keep].astype(np.int64), label[keep].astype(np.int64)
        k = self.classes
        self.intersection += np.bincount(t[p == t], minlength=k)[:k]
        area_p = np.bincount(p, minlength=k)[:k]
        area_t = np.bincount(t, minlength=k)[:k]
        self.union += area_p + area_t - np.bincount(t[p == t], minlength=k)[:k]
        self.labelled += area_t

    def result(self) -> dict:
        present = self.union > 0
        iou = np.where(present, self.intersection / np.maximum(self.union, 1), np.nan)
        return {
            "miou": float(np.nanmean(iou)) if present.any() else 0.0,
            "pixel_accuracy": float(self.intersection.sum() / max(self.labelled.sum(), 1)),
            "per_class_iou": [None if np.isnan(v) else round(float(v), 4) for v in iou],
        }


class DepthMetric:
    """RMSE, AbsRel and δ1 of each image over its valid pixels, averaged over images."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, float]] = []

    def update(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        valid = target > 0
        if mask is not None:
            valid &= mask
        if not valid.any():
            return
        p, t = pred[valid].astype(np.float64), target[valid].astype(np.float64)
        ratio = np.maximum(p / t, t / p)
        self.rows.append(
            (
                float(np.sqrt(np.mean((p - t) ** 2))),
                float(np.mean(np.abs(p - t) / t)),
                float(np.mean(ratio < 1.25)),
            )
        )

    def result(self) -> dict:
        if not self.rows:
            return {"rmse": float("nan"), "abs_rel": float("nan"), "delta1": float("nan")}
        rmse, abs_rel, delta1 = np.mean(np.array(self.rows), 0)
        return {"rmse": float(rmse), "abs_rel": float(abs_rel), "delta1": float(delta1)}
