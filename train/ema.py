"""An exponential moving average of the student's weights (evaluated and exported as "ema").

The reference recipe uses a fixed decay (timm ModelEma, 0.99996) and evaluates the raw
student anyway. With ``warmup`` (proteus 0.1) the decay is ``min(decay, (1 + step) / (10 +
step))`` (timm's ModelEmaV3 warm-up), so a short run's EMA does not stay at its random start.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float, warmup: bool = False):
        self.decay = decay
        self.warmup = warmup
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        weight = 1 - self.decay_at(step)
        ema = list(self.model.state_dict().values())
        live = list(model.state_dict().values())
        floats = [(e, v) for e, v in zip(ema, live, strict=True) if e.is_floating_point()]
        torch._foreach_lerp_([e for e, _ in floats], [v for _, v in floats], weight)
        for e, v in zip(ema, live, strict=True):
            if not e.is_floating_point():
                e.copy_(v)
