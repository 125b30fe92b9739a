"""An exponential moving average of the student's weights (evaluated and exported as "ema").

The decay warms up as ``min(decay, (1 + step) / (10 + step))`` (timm's ModelEmaV3 warm-up):
with a fixed 0.9999 a run of a few thousand steps would leave the EMA at its initial random
weights, while long runs still average over the last ~10k steps.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

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
