"""An exponential moving average of the student's weights (evaluated and exported as "ema")."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema = list(self.model.state_dict().values())
        live = list(model.state_dict().values())
        floats = [(e, v) for e, v in zip(ema, live, strict=True) if e.is_floating_point()]
        torch._foreach_lerp_([e for e, _ in floats], [v for _, v in floats], 1 - self.decay)
        for e, v in zip(ema, live, strict=True):
            if not e.is_floating_point():
                e.copy_(v)
