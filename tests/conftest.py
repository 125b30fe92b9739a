"""Shared test set-up: tiny registered teachers, and generated image data sets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))  # tiny_models and imagegen import by name, as in subprocesses

import imagegen  # noqa: E402
import tiny_models  # noqa: E402, F401  (registers tiny_dinov2, tiny_clip, …)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """An ImageFolder tree: 2 classes × 3 photos of mixed sizes and formats."""
    return imagegen.image_folder(tmp_path / "data", classes=2, per_class=3)


@pytest.fixture
def tiny_weights(tmp_path) -> Path:
    """A saved random tiny_dinov2: extraction loads it the way users load --weights."""
    return imagegen.save_teacher_weights("tiny_dinov2", tmp_path / "tiny_dinov2.safetensors")
