"""Layer sharding: one teacher's blocks spread over several devices of a node.

For a teacher that does not fit one GPU: the blocks are cut into contiguous, equal runs, one
run per device; everything else (patch embedding, position tables, final norm, pooling) stays
on the first. Every placed module gets a forward pre-hook that moves its tensor inputs to its
own device, so timm's own forward code (``forward_features``, ``forward_intermediates``, RoPE
tables passed to each block) runs unchanged and the activations hop from device to device.
This is pipeline placement without pipelining: one device computes at a time, which is the
price of fitting; throughput comes from running fewer, bigger processes (one per G GPUs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from proteus.common.runtime.errors import ProteusError


def spread_layers(model: nn.Module, devices: Sequence[torch.device]) -> list[torch.device]:
    """Place ``model`` over ``devices``; returns each block's device, in block order."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential | nn.ModuleList) or not len(blocks):
        raise ProteusError(
            f"{type(model).__name__}: only models with a list of blocks (ViTs) can be spread "
            "over several GPUs"
        )
    if not devices:
        raise ProteusError("spread_layers: no devices")
    first = torch.device(devices[0])
    model.to(first)
    placed = []
    for index, block in enumerate(blocks):
        device = torch.device(devices[index * len(devices) // len(blocks)])
        block.to(device)
        block.register_forward_pre_hook(_mover(device), with_kwargs=True)
        placed.append(device)
    for child in model.children():
        if child is not blocks:
            child.register_forward_pre_hook(_mover(first), with_kwargs=True)
    return placed


def _mover(device: torch.device):
    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return _to(args, device), _to(kwargs, device)

    return hook


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, tuple | list):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def teacher_devices(gpus_per_teacher: int, local_rank: int, device: str) -> list[torch.device]:
    """The GPUs of this process: G consecutive ones from local_rank × G."""
    if gpus_per_teacher == 1:
        return []
    if device != "cuda":
        raise ProteusError(f"--gpus-per-teacher {gpus_per_teacher}: spreading needs CUDA GPUs")
    first = local_rank * gpus_per_teacher
    count = torch.cuda.device_count()
    if first + gpus_per_teacher > count:
        raise ProteusError(
            f"--gpus-per-teacher {gpus_per_teacher}: process {local_rank} needs GPUs {first}–"
            f"{first + gpus_per_teacher - 1}, this node has {count}; run torchrun with "
            f"--nproc_per_node {max(1, count // gpus_per_teacher)}"
        )
    return [torch.device(f"cuda:{first + j}") for j in range(gpus_per_teacher)]
