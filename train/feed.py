"""Host → GPU for the next steps, off the step's path: pinned buffers and a side stream.

``.to(device, non_blocking=True)`` from pageable memory is a synchronous copy: the CPU waits
for it, and the GPU's step waits for the CPU. So the loader's thread copies each batch's
images (when rendered on the CPU) and stored targets into pinned memory and issues their
copies on a side CUDA stream, recording an event; the step makes the compute stream wait on
that event (a GPU-side wait: the CPU goes on) and marks the tensors as used there, so the
caching allocator does not hand their memory back while the step still reads it. DALI's GPU
output is already on the device (common/views/renderer.py hands it over without a host
round trip) and passes through.

On the CPU there is nothing to overlap: the feed passes batches through untouched, so CPU
training stays exact and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch


@dataclass
class Staged:
    """A batch's tensors already on their way to the device, and the event that says they
    have arrived."""

    event: Any  # torch.cuda.Event
    tensors: list[torch.Tensor] = field(default_factory=list)


class DeviceFeed:
    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None

    def stage(self, batch, sources):
        """In the loader's thread: the batch with its images and each cache source's stored
        targets copied to the device on the side stream (the batch itself on the CPU)."""
        if self.stream is None:
            return batch
        moved: list[torch.Tensor] = []
        with torch.cuda.stream(self.stream):
            images = batch.images
            if images.device.type == "cpu":
                images = images.pin_memory().to(self.device, non_blocking=True)
                moved.append(images)
            fetched = [
                _to_device(f, self.device, moved) if s.kind == "cache" else f
                for s, f in zip(sources, batch.fetched, strict=True)
            ]
            event = torch.cuda.Event()
            event.record(self.stream)
        return replace(batch, images=images, fetched=fetched, staged=Staged(event, moved))

    @staticmethod
    def wait(batch) -> None:
        """In the step: the compute stream waits for the batch's copies (on the GPU)."""
        staged = getattr(batch, "staged", None)
        if staged is None:
            return
        current = torch.cuda.current_stream()
        current.wait_event(staged.event)
        for tensor in staged.tensors:
            tensor.record_stream(current)


def _to_device(value, device: torch.device, moved: list[torch.Tensor]):
    """Every numpy array in ``value`` (nested dicts) as a device tensor copied from pinned
    memory; the rest as it is."""
    if isinstance(value, dict):
        return {k: _to_device(v, device, moved) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(value)).pin_memory()
        tensor = tensor.to(device, non_blocking=True)
        moved.append(tensor)
        return tensor
    return value
