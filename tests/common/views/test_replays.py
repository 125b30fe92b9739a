"""The replay rule: how often a schedule draws each cached view, and the views or fresh share
that keep it within MAX_REPLAYS."""

from __future__ import annotations

import pytest

from proteus.common.views.replays import MAX_REPLAYS, fresh_needed, replays, views_needed


def test_the_recipe_at_the_old_default_replays_each_view_37_times():
    # The arithmetic: 300 epochs over K = 8 views; 240 epochs is 30 replays.
    assert replays(300, 8) == 37.5 and replays(240, 8) == 30
    assert replays(240, 8, fresh=0.25) == 22.5  # a hybrid's fresh share is not a replay


@pytest.mark.parametrize("epochs", [1, 7, 8, 9, 20, 240, 300, 1000])
def test_views_needed_is_the_fewest_within_the_rule(epochs):
    k = views_needed(epochs)
    assert replays(epochs, k) <= MAX_REPLAYS
    assert k == 1 or replays(epochs, k - 1) > MAX_REPLAYS


@pytest.mark.parametrize(("epochs", "views"), [(300, 8), (240, 4), (100, 1), (20, 2), (9, 1)])
def test_fresh_needed_is_the_smallest_twentieth_within_the_rule(epochs, views):
    p = fresh_needed(epochs, views)
    assert replays(epochs, views, p) <= MAX_REPLAYS + 1e-9
    assert p == 0 or replays(epochs, views, p - 0.05) > MAX_REPLAYS


def test_a_schedule_within_the_rule_needs_no_fresh_views():
    assert fresh_needed(MAX_REPLAYS * 4, 4) == 0 and fresh_needed(10, 100) == 0
