"""`proteus sweep` runs variants over one cache; `proteus compare` puts them in one table."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from click.testing import CliRunner
from extract_helpers import run_cli, tiny_cache

from proteus.app import main
from proteus.common.runs.checkpoint import load_checkpoint

TRAIN = {
    "student": "tiny_vit14",
    "max-steps": 3,
    "batch-size": 4,
    "lr": 2e-3,
    "warmup-epochs": 0,
    "drop-path": 0,
    "ema-decay": 0.9,
    "device": "cpu",
    "threads": 1,
    "tensorboard": False,
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_cache(tmp_path_factory.mktemp("sweep"), per_class=3)


def _sweep_file(world, path, out, **changes):
    spec = {
        "out": str(out),
        "train": TRAIN | {"cache": str(world / "cache")},
        "variants": [{"name": "full"}, {"name": "token-only", "lambda-fea": 0, "lambda_patch": 0}],
        "evaluate": {
            "knn": {
                "train": str(world / "data"),
                "val": str(world / "data"),
                "image-size": 28,
                "batch-size": 8,
                "device": "cpu",
                "k": 3,
            }
        },
    } | changes
    path.write_text(yaml.safe_dump(spec))
    return path


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_a_two_entry_sweep_makes_two_runs_and_one_table(world, tmp_path):
    out = tmp_path / "runs"
    config = _sweep_file(world, tmp_path / "sweep.yaml", out)
    result = run_cli("sweep", str(config))
    assert result.returncode == 0, result.stderr
    for name in ("full", "token-only"):
        assert load_checkpoint(out / name)["step"] == 3
        assert (out / name / "eval" / "knn.json").is_file()
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [r["run"] for r in rows] == ["full", "token-only"]
    # The columns say what differs, the final losses, kNN, speed and time.
    assert [r["lambda_fea"] for r in rows] == ["default", "0.0"]
    assert float(rows[0]["loss_fea"]) > 0 and rows[1]["loss_fea"] == ""
    for row in rows:
        assert 0 <= float(row["knn_top1"]) <= 1 and float(row["images_per_s"]) > 0
        assert float(row["train_s"]) > 0 and row["steps"] == "3/3"
    assert "token-only" in result.stdout and "knn_top1" in result.stdout

    # Again: nothing is retrained or re-evaluated, and the table is the same.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    again = _invoke("sweep", config)
    assert again.exit_code == 0, again.output
    assert again.output.count("already trained, skipping") == 2
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == stamps
    # A run folder from before an option existed: the option at its default is no change.
    record = json.loads((out / "full" / "config.json").read_text())
    del record["config"]["target_space"], record["config"]["compile"]
    (out / "full" / "config.json").write_text(json.dumps(record))
    older = _invoke("sweep", config, "--only", "full")
    assert older.exit_code == 0 and "already trained, skipping" in older.output, older.output

    # compare on its own gives the same rows; a changed variant is refused, not continued.
    table = _invoke("compare", out / "full", out / "token-only", "--csv", tmp_path / "t.csv")
    assert table.exit_code == 0 and len(list(csv.DictReader((tmp_path / "t.csv").open()))) == 2
    changed = _sweep_file(
        world,
        tmp_path / "changed.yaml",
        out,
        train=TRAIN | {"cache": str(world / "cache"), "lr": 1e-3},
    )
    refused = _invoke("sweep", changed, "--only", "full")
    assert refused.exit_code == 1
    assert "trained with other options (lr: 0.002 → 0.001)" in refused.output


def test_print_commands_gives_the_cluster_lines(world, tmp_path):
    out = tmp_path / "runs"
    config = _sweep_file(world, tmp_path / "s.yaml", out)
    result = _invoke("sweep", config, "--print-commands", "--nproc-per-node", "4")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 5  # 2 × (train + knn) + compare
    assert lines[0].startswith("torchrun --nproc_per_node=4 -m proteus train ")
    assert f"--cache {world}/cache" in lines[0]
    assert "--lambda-fea 0 --lambda-patch 0" in lines[2] and f"--out {out}/token-only" in lines[2]
    assert lines[1].startswith("proteus eval knn ") and f"--checkpoint {out}/full" in lines[1]
    assert lines[4] == f"proteus compare {out}/full {out}/token-only --csv {out}/compare.csv"
    assert not out.exists()  # printing runs nothing


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"variants": [{"name": "a", "lamda-fea": 0}]},
            "variant a: 'lamda-fea' is not an option of `proteus train`",
        ),
        ({"variants": [{"name": "a"}, {"name": "a"}]}, "variant 2: needs a unique name"),
        ({"variants": [{"name": "a", "hint": [61]}]}, "quote each pair"),
        ({"variants": [{"name": "a", "out": "x"}]}, "(the sweep sets it)"),
        (
            {"variants": [{"name": "a", "batch-size": 0}]},
            "variant a: Invalid value for '--batch-size'",
        ),
        ({"evaluate": {"probe": {}}}, "evaluate: unknown ['probe']"),
        ({"color": 1}, "unknown keys ['color']"),
    ],
)
def test_bad_sweep_files_are_refused_before_anything_runs(world, tmp_path, change, message):
    out = tmp_path / "runs"
    config = _sweep_file(world, tmp_path / "s.yaml", out, **change)
    result = _invoke("sweep", config)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not out.exists()


def test_compare_refuses_a_folder_that_is_not_a_run(tmp_path):
    result = _invoke("compare", tmp_path)
    assert result.exit_code == 1 and "not a training run folder" in result.output


def test_a_failing_variant_does_not_stop_the_others(world, tmp_path):
    out = tmp_path / "runs"
    variants = [{"name": "broken", "hint": ["0:7"]}, {"name": "fine"}]  # no layer_7 cached
    evaluate = {
        "agreement": [
            {"cache": str(world / "cache"), "device": "cpu"},
            {"cache": str(world / "cache"), "max-views": 2},
        ]
    }
    config = _sweep_file(world, tmp_path / "s.yaml", out, variants=variants, evaluate=evaluate)
    printed = _invoke("sweep", config, "--print-commands").output.splitlines()
    assert sum(line.startswith("proteus eval agreement") for line in printed) == 4
    result = _invoke("sweep", config)
    assert result.exit_code == 1
    assert "1 of 2 variants failed: broken (--hint 0:7: --cache" in result.output
    assert load_checkpoint(out / "fine")["step"] == 3
    assert (out / "fine" / "eval" / "agreement_tiny_dinov2.json").is_file()
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [r["run"] for r in rows] == ["fine"] and float(
        rows[0]["agreement_tiny_dinov2_token_cosine"]
    )
