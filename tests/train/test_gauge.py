"""The held-out gauge: scores on trained and never-seen views in the log, the run's record,
compare and viz, without changing what the run trains."""

from __future__ import annotations

import json

import imagegen
import pytest
from extract_helpers import extract
from train_helpers import train

from proteus.common.runs.logs import read_log
from proteus.evaluate.compare import summarize_run
from proteus.evaluate.viz import plot_gauge
from proteus.train.gauge import GAUGE_SHARE, GAUGE_VIEWS, VIEW_COST, default_every

SETS = ("trained_views", "heldout_views", "heldout_images")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("gauge")
    data = imagegen.image_folder(root / "data", classes=2, per_class=6)
    weights = imagegen.save_teacher_weights("tiny_dinov2", root / "w.safetensors")
    extract(data, root / "held", weights, views=2, holdout_views=1, holdout_images=2)
    extract(data, root / "plain", weights, views=2)
    return root


def _gauged(run):
    return {r["step"]: r for r in read_log(run) if any(k.startswith("gauge/") for k in r)}


def test_every_set_is_scored_on_schedule_and_recorded(world, tmp_path):
    train(world / "held", tmp_path / "run", max_steps=6, eval_every=2)
    gauged = _gauged(tmp_path / "run")
    assert sorted(gauged) == [1, 3, 5]
    for record in gauged.values():
        for name in SETS:
            for metric in ("loss", "loss_token", "token_cosine", "patch_cosine"):
                assert f"gauge/{name}/{metric}" in record, (name, metric)
            assert record[f"gauge/{name}/loss"] > 0
        assert record["gauge_s"] > 0  # its time, apart from the step's
    gauge = json.loads((tmp_path / "run" / "config.json").read_text())["gauge"]
    assert gauge["every"] == 2 and set(gauge["sets"]) == set(SETS)
    # 10 training images × 2 views; 10 × 1 held-out views; 2 held-out images × 2 views.
    assert gauge["sets"] == {"trained_views": 20, "heldout_views": 10, "heldout_images": 4}
    row, _ = summarize_run(tmp_path / "run")
    assert row["gauge_share"] > 0
    last = gauged[5]
    for name in SETS:
        assert row[f"{name}_loss"] == last[f"gauge/{name}/loss"]
        best = min(r[f"gauge/{name}/loss"] for r in gauged.values())
        assert row[f"{name}_best"] == best
        assert row[f"{name}_best_step"] in gauged
    png = plot_gauge(tmp_path / "run", tmp_path / "gauge.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"


def test_scoring_does_not_change_what_the_run_trains(world, tmp_path):
    train(world / "held", tmp_path / "on", max_steps=4, eval_every=1)
    train(world / "held", tmp_path / "off", max_steps=4, eval_every=0)
    on, off = read_log(tmp_path / "on"), read_log(tmp_path / "off")
    assert [r["loss"] for r in on] == [r["loss"] for r in off]
    assert not _gauged(tmp_path / "off")
    assert plot_gauge(tmp_path / "off", tmp_path / "none.png") is None
    assert not json.loads((tmp_path / "off" / "config.json").read_text()).get("gauge")


def test_a_cache_without_held_out_views_is_said_once(world, tmp_path, capfd):
    train(world / "plain", tmp_path / "run", max_steps=4, eval_every=2)
    err = capfd.readouterr().err
    assert err.count("no held-out views in this cache") == 1
    assert "extract --holdout-views N" in err
    assert set(json.loads((tmp_path / "run" / "config.json").read_text())["gauge"]["sets"]) == {
        "trained_views"
    }


def test_online_the_teacher_scores_first_views_and_never_drawn_ones(world, tmp_path):
    train(
        None,
        tmp_path / "online",
        max_steps=4,
        teacher="tiny_dinov2",
        weights=world / "w.safetensors",
        data=world / "data",
        eval_every=2,
    )
    gauged = _gauged(tmp_path / "online")
    assert sorted(gauged) == [1, 3]
    names = {k.split("/")[1] for r in gauged.values() for k in r if k.startswith("gauge/")}
    assert names == {"trained_views", "heldout_views"}
    # As many samples as a cache's sets (12 images: 10 views of each), not one per image.
    sets = json.loads((tmp_path / "online" / "config.json").read_text())["gauge"]["sets"]
    assert sets == {
        "trained_views": GAUGE_VIEWS // 12 * 12,
        "heldout_views": GAUGE_VIEWS // 12 * 12,
    }


def test_the_default_period_is_a_few_times_an_epoch_within_the_compute_share():
    assert default_every(steps_per_epoch=1000, gauge_views=384, global_batch=256) == 250
    # A tiny batch: 384 forward passes every 4 steps would cost far more than 3%.
    every = default_every(steps_per_epoch=8, gauge_views=384, global_batch=4)
    assert every >= 384 * VIEW_COST / (4 * GAUGE_SHARE) and GAUGE_SHARE == 0.03
