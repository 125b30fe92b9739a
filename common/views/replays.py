"""How often a run replays each recorded view, and the rule that bounds it.

A cache holds K views per image and every epoch draws each image once on average (with
repeated augmentation an epoch takes N/r images r times each, as timm's RASampler), so a run
of E epochs draws each cached view E / K times; when a share p of the draws are fresh views
(train --online-fraction), E × (1 − p) / K. Past a point the cached student falls behind an
online one, which never sees a view twice: docs/QUALITY.md "Long schedules" measures where.
Extraction sizes K by this rule (``extract --epochs``); training warns past it.
"""

from __future__ import annotations

import math

# docs/QUALITY.md "Long schedules": the most replays a view measured at parity with online
# (K = 30 over 240 epochs, two seeds: +0.1 kNN, +0.5 linear); at 30 replays the cached
# student was 4.6 kNN points behind.
MAX_REPLAYS = 8


def replays(epochs: float, views: int, fresh: float = 0.0) -> float:
    """Times each of ``views`` cached views is drawn over ``epochs`` epochs when a ``fresh``
    share of the draws are new views."""
    return epochs * (1.0 - fresh) / views


def views_needed(epochs: float, fresh: float = 0.0) -> int:
    """The fewest views per image that keep every view within MAX_REPLAYS draws."""
    return max(1, math.ceil(epochs * (1.0 - fresh) / MAX_REPLAYS - 1e-9))


def fresh_needed(epochs: float, views: int) -> float:
    """The smallest fresh share (``train --online-fraction``), in steps of 0.05, that keeps
    ``views`` cached views within MAX_REPLAYS draws."""
    share = 1.0 - MAX_REPLAYS * views / epochs
    return min(1.0, max(0.0, math.ceil(share * 20 - 1e-9) / 20))
