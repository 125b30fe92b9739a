"""Inputs for the teacher tests (the tiny teachers live in tests/tiny_models.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
