"""Extraction with --dtype int8 and --pca K, and training from such caches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from extract_helpers import cli_args, extract, tiny_cache
from train_helpers import train

from proteus.app import main
from proteus.common.cache.reader import Cache
from proteus.common.cache.verify import verify_cache
from proteus.common.runs.logs import read_log


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tiny_cache(tmp_path_factory.mktemp("compress"), cache="fp16")
    return root, root / "data", root / "w.safetensors"


def _rel_mse(a, b):
    return float(((a - b) ** 2).mean() / (b**2).mean())


@pytest.mark.parametrize(
    "options, bound",
    [({"dtype": "int8"}, 1e-3), ({"pca": 16}, 0.2), ({"pca": 16, "dtype": "int8"}, 0.2)],
    ids=["int8", "pca16", "pca16-int8"],
)
def test_compressed_caches_decode_close_to_float16(world, tmp_path, options, bound):
    root, data, weights = world
    m = extract(data, tmp_path / "c", weights, views=2, **options)
    assert verify_cache(tmp_path / "c") == []
    ref, comp = Cache(root / "fp16"), Cache(tmp_path / "c")
    ids = np.arange(m.counts["views"])
    for name in ("cls", "patch", "layer_1"):
        got, want = comp.read(name, ids), ref.read(name, ids)
        assert got.shape == want.shape and got.dtype == np.float32
        if options.get("pca") and name != "cls":
            assert m.pca[name]["k"] == 16 and m.encoding[name].pca_k == 16
            assert _rel_mse(got, want) <= 1 - m.pca[name]["variance_kept"] + bound
        else:
            assert _rel_mse(got, want) < bound
    assert m.counts["target_bytes"] < Cache(root / "fp16").manifest.counts["target_bytes"]


def test_training_from_an_int8_cache_decodes_on_the_device(world, tmp_path):
    _, data, weights = world
    extract(data, tmp_path / "c", weights, views=2, dtype="int8")
    train(tmp_path / "c", tmp_path / "run", max_steps=3)
    assert all(np.isfinite(r["loss"]) for r in read_log(tmp_path / "run"))


def test_the_trainer_reads_int8_bytes_not_floats(world, tmp_path):
    _, data, weights = world
    extract(data, tmp_path / "c", weights, views=2, dtype="int8", pca=8)
    cache = Cache(tmp_path / "c")
    stored = cache.read_stored("patch", np.array([0, 3]))
    assert stored["patch"].dtype == np.int8 and stored["patch"].shape == (2, 4, 8)
    decoded = cache.codec("patch").decode({k: torch.from_numpy(v) for k, v in stored.items()})
    np.testing.assert_allclose(decoded.numpy(), cache.read("patch", np.array([0, 3])))


def test_cli_options_and_refusals(world, tmp_path):
    _, data, weights = world
    args = cli_args(data, tmp_path / "c", weights, "--dtype", "int8", "--pca", "8")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    info = CliRunner().invoke(main, ["cache", "info", str(tmp_path / "c")])
    assert "(int8, PCA 8)" in info.output and "keeps" in info.output
    # int8 PCA coefficients are stored rotated; the codec is measured on views it never saw.
    assert "coefficients rotated (hadamard)" in info.output
    assert "held out (" in info.output and "1st percentile" in info.output
    m = Cache(tmp_path / "c").manifest
    held = m.pca["patch"]["heldout"]
    assert held["views"] > 0 and -1 <= held["cosine_p1"] <= held["cosine_mean"] <= 1
    assert m.pca["patch"]["rotation"]["kind"] == "hadamard"
    again = CliRunner().invoke(main, cli_args(data, tmp_path / "c", weights, "--dtype", "int8"))
    assert again.exit_code == 1 and "encoding" in again.output
    too_many = CliRunner().invoke(main, cli_args(data, tmp_path / "d", weights, "--pca", "32"))
    assert too_many.exit_code == 1 and "--pca 32: must be between 1 and 31" in too_many.output
