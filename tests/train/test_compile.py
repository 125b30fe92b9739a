"""--compile where torch cannot compile (here: no C++ compiler for inductor): one line, then
the run trains uncompiled with the losses of a run without --compile."""

from __future__ import annotations

import pytest
from extract_helpers import run_cli, tiny_cache
from train_helpers import train_args

from proteus.common.runs.logs import read_log

pytestmark = pytest.mark.slow  # torch.compile traces the student first; still run by make test


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_cache(tmp_path_factory.mktemp("compile"), classes=3)


def test_compile_without_a_compiler_says_so_and_trains_eager(world, tmp_path):
    args = train_args(world / "cache", tmp_path / "compiled", "--max-steps", "3", "--compile")
    no_compiler = {"CXX": "/nonexistent/g++", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "ind")}
    compiled = run_cli(*args, env_extra=no_compiler)
    assert compiled.returncode == 0, compiled.stderr
    said = [line for line in compiled.stderr.splitlines() if "--compile" in line]
    assert len(said) == 1 and "torch cannot compile this student here" in said[0]
    assert "training uncompiled" in said[0] and "Traceback" not in compiled.stderr
    eager = run_cli(*train_args(world / "cache", tmp_path / "eager", "--max-steps", "3"))
    assert eager.returncode == 0, eager.stderr
    losses = [[r["loss"] for r in read_log(tmp_path / run)] for run in ("compiled", "eager")]
    assert losses[0] == losses[1]
