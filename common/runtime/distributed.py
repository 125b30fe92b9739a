"""Process groups for ``torchrun``: one helper both stages use, a no-op for a single process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from proteus.common.runtime.errors import ProteusError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # global rank
    world: int = 1  # number of processes
    local_rank: int = 0  # GPU index on this node

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device: str) -> DistInfo:
    """Join the group ``torchrun`` describes in the environment (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistInfo()
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    if not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def close_distributed(info: DistInfo) -> None:
    if info.active and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def share_outcome(info: DistInfo, error: str | None) -> None:
    """Broadcast rank 0's success or error, so other ranks stop instead of hanging."""
    if not info.active:
        return
    box: list[Any] = [error]
    dist.broadcast_object_list(box, src=0)
    if box[0] is not None and not info.is_main:
        raise ProteusError(f"rank 0 failed: {box[0]}")


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    if not info.active:
        return [obj]
    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def resolve_device(device: str) -> str:
    """``auto`` → cuda when a GPU is visible; asking for cuda without one is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ProteusError("--device cuda: no CUDA GPU is visible here (use --device cpu)")
    return device
