"""Running extraction in tests: in-process through the config, or as a real CLI subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from proteus.extract.config import ExtractConfig
from proteus.extract.runner import run_extract

TESTS = Path(__file__).resolve().parent


def config(data: Path, out: Path, weights: Path, **overrides) -> ExtractConfig:
    base = ExtractConfig(
        teacher="tiny_dinov2",
        data=data,
        out=out,
        views=3,
        layers=(1,),
        weights=weights,
        batch_size=4,
        shard_views=5,
        device="cpu",
        progress=False,
        render_threads=1,
    )
    return replace(base, **overrides)


def extract(data: Path, out: Path, weights: Path, **overrides):
    return run_extract(config(data, out, weights, **overrides))


def tiny_cache(
    root: Path, *, classes: int = 2, per_class: int = 4, cache: str = "cache", **overrides
) -> Path:
    """The usual test world under ``root``: images in data/, tiny_dinov2 weights in
    w.safetensors and a sealed cache (2 views per image unless overridden); returns ``root``."""
    import imagegen

    data = imagegen.image_folder(root / "data", classes=classes, per_class=per_class)
    weights = imagegen.save_teacher_weights("tiny_dinov2", root / "w.safetensors")
    extract(data, root / cache, weights, **({"views": 2} | overrides))
    return root


def cli_env() -> dict[str, str]:
    """A subprocess that knows the tiny teachers, via the user-facing plugin mechanism."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env["PROTEUS_PLUGINS"] = "tiny_models"
    env["OMP_NUM_THREADS"] = "1"  # one thread, like each torchrun rank: same float results
    return env


def cli_args(data: Path, out: Path | str, weights: Path, *extra: str) -> list[str]:
    return [
        "extract",
        "--teacher",
        "tiny_dinov2",
        "--data",
        str(data),
        "--out",
        str(out),
        "--views",
        "3",
        "--layers",
        "1",
        "--weights",
        str(weights),
        "--batch-size",
        "4",
        "--shard-views",
        "5",
        "--device",
        "cpu",
        "--threads",
        "1",
        *extra,
    ]


def torchrun_cli(nproc: int, *args: str) -> list[str]:
    """The command line that runs ``proteus ARGS`` as ``nproc`` torchrun processes."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "proteus",
        *args,
    ]


def run_cli(*args: str, env_extra: dict[str, str] | None = None, **kwargs):
    """The real command line in a subprocess; ``env_extra`` e.g. sets PROTEUS_FAULT."""
    return subprocess.run(
        [sys.executable, "-m", "proteus", *args],
        env=cli_env() | (env_extra or {}),
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )  # -> subprocess.CompletedProcess


def target_bytes(cache: Path) -> dict[str, bytes]:
    """Every target array's values as raw bytes, read through zarr-python."""
    import zarr

    group = zarr.open_group(str(cache / "targets"), mode="r")
    return {name: np.asarray(arr[...]).tobytes() for name, arr in group.arrays()}


def writable_copy(cache: Path, to: Path) -> Path:
    """A copy of a sealed cache that tests may damage (sealing clears the write bits)."""
    import shutil

    shutil.copytree(cache, to)
    for path in to.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return to


def edit_manifest(cache: Path, **changes) -> dict:
    """Set manifest keys by hand (a value of None deletes the key); returns the manifest."""
    import json

    meta = Path(cache) / "zarr.json"
    meta.chmod(0o644)
    data = json.loads(meta.read_text())
    manifest = data["attributes"]["proteus"]
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    meta.write_text(json.dumps(data))
    return manifest


def reseal(cache: Path) -> None:
    """Record the edited manifest's digest, as if the cache had been written that way."""
    import json

    from proteus.common.cache.layout import read_manifest, seal_path

    seal = seal_path(cache)
    seal.chmod(0o644)
    seal.write_text(json.dumps({"manifest_sha256": read_manifest(cache).digest()}))
