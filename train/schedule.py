"""The learning-rate schedule: linear warm-up, then cosine decay to ``min_lr``, per step."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CosineSchedule:
    peak: float  # lr after warm-up
    total_steps: int
    warmup_steps: int
    min_lr: float = 1e-6

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + 0.5 * (self.peak - self.min_lr) * (1 + math.cos(math.pi * progress))


def scaled_lr(lr: float | None, global_batch: int) -> float:
    """Proteus/DeiT scaling: 5e-4 per 512 images of global batch, unless given."""
    return lr if lr is not None else 5e-4 * global_batch / 512
