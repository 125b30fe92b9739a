"""Progress off a terminal is plain lines, never carriage-return redraws (SLURM logs, pipes)."""

from __future__ import annotations

import io
import sys

import pytest
from tqdm import tqdm

from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.progress import PlainProgress, progress_bar


def test_off_a_terminal_progress_is_plain_lines_with_rate_eta_and_postfix(monkeypatch, capsys):
    monkeypatch.setenv("PROTEUS_PROGRESS_SECONDS", "0")  # a line per update
    bar = progress_bar(total=4, desc="train", unit="step")
    assert isinstance(bar, PlainProgress)
    for loss in (0.5, 0.4, 0.3, 0.2):
        bar.set_postfix({"loss": loss, "img/s": "120"})
        bar.update(1)
    bar.close()
    bar.close()  # closing twice prints the last line once
    lines = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(lines)
    assert len(lines) == 5
    assert lines[0].startswith("train: 1/4 step (25%), ") and "ETA" in lines[0]
    assert lines[0].endswith("| loss 0.5 img/s 120")
    assert lines[-1].startswith("train: 4/4 step (100%)") and "ETA" not in lines[-1]


def test_the_interval_holds_lines_back_and_the_end_is_always_reported(monkeypatch, capsys):
    monkeypatch.setenv("PROTEUS_PROGRESS_SECONDS", "3600")
    assert list(progress_bar(range(100), desc="features", unit="batch")) == list(range(100))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("features: 100/100 batch (100%)")


def test_resumed_work_counts_its_rate_from_where_it_started():
    out = io.StringIO()
    bar = PlainProgress(total=10, desc="train", unit="step", initial=8, seconds=0, stream=out)
    bar.update(2)
    assert out.getvalue().startswith("train: 10/10 step (100%)")
    assert bar.n == 10


def test_disabled_and_on_a_terminal_it_is_tqdm(monkeypatch, capsys):
    assert isinstance(progress_bar(total=3, disable=True), tqdm)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = progress_bar(total=3, desc="x", file=io.StringIO())
    assert isinstance(bar, tqdm)
    bar.close()


def test_a_bad_interval_names_the_variable(monkeypatch):
    monkeypatch.setenv("PROTEUS_PROGRESS_SECONDS", "often")
    with pytest.raises(ProteusError, match="PROTEUS_PROGRESS_SECONDS='often': give a number"):
        progress_bar(total=3)
