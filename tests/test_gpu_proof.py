"""benchmarks/gpu_proof.py --cpu-rehearsal: every step of the GPU proof at toy size, so the
script a device session runs once cannot rot between sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_proof.py"


@pytest.mark.slow
def test_the_rehearsal_runs_every_section_and_judges_only_what_a_cpu_can_show(tmp_path):
    out = tmp_path / "proof.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu-rehearsal", "--json", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert list(sections) == ["extract", "renderer", "train", "ddp", "together"]
    assert not any("error" in s or "skipped" in s for s in sections.values()), sections

    extract = sections["extract"]
    assert [r["what"] for r in extract["rows"]] == [
        "teacher forward alone, in memory (baseline)",
        "proteus extract, end to end",
    ]
    assert all(r["views/s"] > 0 for r in extract["rows"]) and extract["gflop_per_view"] > 0
    # Speed goals are recorded but not judged at toy size on a CPU.
    assert [c["ok"] for c in extract["checks"]] == [None]

    assert sections["renderer"]["skipped_checks"] == ["GPU renderer: needs CUDA"]
    assert sections["renderer"]["views"] == 32

    train = sections["train"]
    assert len(train["rows"]) == 8 and all(r["images/s"] > 0 for r in train["rows"])
    # int8 and PCA need fewer target bytes per image than float16.
    mb_per_image = [r["target MB/s"] / r["images/s"] for r in train["rows"][::2]]
    assert mb_per_image[0] > mb_per_image[1] and mb_per_image[0] > mb_per_image[2]
    assert "coefficient space" in train["rows"][-1]["loop"]

    ddp = sections["ddp"]
    assert [c["ok"] for c in ddp["checks"]] == [True]
    assert ddp["rows"][0]["losses"] == ddp["rows"][1]["losses"]
    together = sections["together"]
    assert [c["ok"] for c in together["checks"]] == [True, None]  # exact on the CPU
    assert together["rows"][1]["seconds"] > 0
    assert "0 failed" in done.stdout


def test_an_unknown_section_is_a_one_line_error():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu-rehearsal", "--sections", "extract,warp"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert (
        "--sections: unknown warp; choose from extract,renderer,train,ddp,together" in done.stderr
    )
