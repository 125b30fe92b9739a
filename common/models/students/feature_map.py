"""What a backbone's forward gives, found on the meta device: whether it has a spatial
feature map for the dense targets, its widths and its grid. The registry asks it of a
``timm:<name>`` model to tell a convnet from a ViT; the convnet student builds on it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from proteus.common.runtime.errors import ProteusError


@dataclass(frozen=True)
class FeatureMap:
    """What a backbone's forward gives, found by running it on the meta device (no compute)."""

    summary_dim: int
    dense_dim: int
    native_grid: tuple[int, int]  # the dense map's rows and columns at the probed size
    stage_dims: tuple[int, ...]
    dense_from_final: bool  # the final features are an NCHW map (else: the last stage)


def probe_feature_map(meta: nn.Module, image_size: int, label: str) -> FeatureMap | None:
    """The feature map of a model built on the meta device (so probing a big one costs no
    memory or compute) at ``image_size``, or None if it has none."""
    if not hasattr(meta, "forward_intermediates") or not hasattr(meta, "forward_head"):
        return None
    meta.eval()
    x = torch.empty(2, 3, image_size, image_size, device="meta")
    try:
        with torch.no_grad():
            final, stages = meta.forward_intermediates(x)  # type: ignore[operator]
            pooled = meta.forward_head(final, pre_logits=True)  # type: ignore[operator]
    except Exception as exc:  # timm raises several kinds for an unsupported size or family
        raise ProteusError(
            f"{label}: its forward at {image_size}px failed ({str(exc).splitlines()[0][:160]})"
        ) from exc
    if not stages or any(s.ndim != 4 for s in stages) or pooled.ndim != 2:
        return None
    last = stages[-1]
    from_final = final.ndim == 4 and final.shape[-2:] == last.shape[-2:]
    dense = final if from_final else last
    return FeatureMap(
        summary_dim=int(pooled.shape[1]),
        dense_dim=int(dense.shape[1]),
        native_grid=(int(dense.shape[2]), int(dense.shape[3])),
        stage_dims=tuple(int(s.shape[1]) for s in stages),
        dense_from_final=bool(from_final),
    )
