"""Learning-rate schedules: warm-up then cosine, stepped per epoch (the reference) or per step.

``EpochCosineSchedule`` is timm's ``CosineLRScheduler`` (warm-up from ``warmup_lr``, no warm-up
prefix, one cycle to ``min_lr``) driven as the reference's ``main.py`` drives it: the lr is set
once per epoch, by ``lr_scheduler.step(epoch)`` *after* epoch ``epoch``, so epochs 0 and 1 both
train at ``warmup_lr`` and epoch e ≥ 1 trains at the value for e - 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CosineSchedule:
    """Per step: linear warm-up from 0, then cosine decay to ``min_lr`` (proteus 0.1)."""

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


@dataclass(frozen=True)
class EpochCosineSchedule:
    """Per epoch, as the reference: see the module docstring."""

    peak: float
    epochs: int  # the cosine's length (timm t_initial = --epochs)
    steps_per_epoch: int
    warmup_epochs: float
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5

    @property
    def warmup_steps(self) -> int:
        return round(self.warmup_epochs * self.steps_per_epoch)

    def at_epoch(self, t: int) -> float:
        """timm CosineLRScheduler._get_lr(t) for one parameter group."""
        if t < self.warmup_epochs:
            return self.warmup_lr + t * (self.peak - self.warmup_lr) / self.warmup_epochs
        if t >= self.epochs:  # cycle_limit 1: past the cycle, the floor
            return self.min_lr
        cosine = 1 + math.cos(math.pi * t / self.epochs)
        return self.min_lr + 0.5 * (self.peak - self.min_lr) * cosine

    def __call__(self, step: int) -> float:
        epoch = step // self.steps_per_epoch
        return self.at_epoch(max(0, epoch - 1))


LR_RULES = ("linear", "sqrt-below-512")


def scaled_lr(
    lr: float | None, global_batch: int, per_512: float = 5e-4, rule: str = "linear"
) -> float:
    """The peak lr, unless given. ``linear``: Proteus/DeiT, ``per_512`` × global batch / 512.
    ``sqrt-below-512``: the same from 512 up (the paper's batch sizes get the paper's lr);
    below, ``per_512`` × √(batch / 512), the square-root rule for Adam-type optimisers
    (Malladi et al. 2022), which does not starve small-batch, short runs."""
    if lr is not None:
        return lr
    if rule == "sqrt-below-512" and global_batch < 512:
        return per_512 * (global_batch / 512) ** 0.5
    return per_512 * global_batch / 512
