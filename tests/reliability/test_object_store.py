"""Caches on an S3-compatible server (moto's server mode on the loopback, started here): the
real CLI writes, resumes, verifies and trains from ``s3://`` URLs through obstore, with no
mock anywhere between them and the server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import imagegen
import numpy as np
import pytest
from extract_helpers import cli_args, cli_env, run_cli
from s3server import S3Server, copy_prefix
from train_helpers import train, train_args

from proteus.common.cache.layout import shard_key
from proteus.common.cache.reader import Cache
from proteus.common.runs.logs import read_log
from proteus.common.runtime.errors import ProteusError
from proteus.common.storage.objectstore import ObjectStore

pytestmark = pytest.mark.slow  # real CLI subprocesses; still run by make test

BUCKET = "proteus-caches"


@pytest.fixture(scope="module")
def server():
    s3 = S3Server.start()
    s3.create_bucket(BUCKET)
    yield s3
    s3.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory, server) -> Path:
    """Images, teacher weights and a local reference cache (12 shards of 2 views)."""
    root = tmp_path_factory.mktemp("s3")
    imagegen.image_folder(root / "data", classes=2, per_class=4)
    imagegen.save_teacher_weights("tiny_dinov2", root / "w.safetensors")
    run = run_cli(*_extract_args(root, str(root / "local")))
    assert run.returncode == 0, run.stderr
    return root


@pytest.fixture
def env(server, world, monkeypatch, tmp_path) -> dict[str, str]:
    """The S3 variables a user exports, for this process (in-process readers) and the CLI."""
    extra = server.env() | {
        "PROTEUS_SHARD_CACHE": str(tmp_path / "shards"),
        "PROTEUS_STAGING": str(tmp_path / "staging"),
    }
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    return extra


@pytest.fixture(scope="module")
def remote(world, server) -> str:
    """The same extraction as the local reference, written to the server."""
    url = f"s3://{BUCKET}/caches/tiny"
    run = run_cli(*_extract_args(world, url), env_extra=_env(server, world / "module"))
    assert run.returncode == 0, run.stderr
    return url


def _env(server: S3Server, where: Path) -> dict[str, str]:
    return server.env() | {
        "PROTEUS_SHARD_CACHE": str(where / "shards"),
        "PROTEUS_STAGING": str(where / "staging"),
    }


def _extract_args(world: Path, out: str | Path) -> list[str]:
    return cli_args(world / "data", out, world / "w.safetensors", "--shard-views", "2")


def _all_targets(cache: Cache) -> dict[str, np.ndarray]:
    ids = np.arange(cache.manifest.counts["views"])
    return {name: cache.read(name, ids) for name in cache.manifest.targets}


def test_extract_to_s3_equals_the_local_cache_and_trains_alike(world, remote, env, tmp_path):
    local, cache = Cache(world / "local"), Cache(remote)
    assert cache.manifest.stats == local.manifest.stats
    assert cache.manifest.counts == local.manifest.counts
    ours, theirs = _all_targets(cache), _all_targets(local)
    assert all(np.array_equal(ours[n], theirs[n]) for n in theirs)

    info = run_cli("cache", "info", remote, env_extra=env)
    assert info.returncode == 0, info.stderr
    assert f"cache      {remote}" in info.stdout and "state      sealed" in info.stdout
    check = run_cli("cache", "verify", remote, env_extra=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "every target chunk" in check.stdout

    train(remote, tmp_path / "from-s3", max_steps=4)
    train(world / "local", tmp_path / "from-disk", max_steps=4)
    losses = [[r["loss"] for r in read_log(tmp_path / run)] for run in ("from-s3", "from-disk")]
    assert losses[0] == losses[1]


def test_writer_killed_mid_shard_resumes_to_the_same_cache(world, server, env):
    url = f"s3://{BUCKET}/caches/killed"
    # Killed between the objects of the 4th shard: its patch target is up, its marker is not.
    killed = run_cli(
        *_extract_args(world, url), env_extra=env | {"PROTEUS_FAULT": "shard-upload:10"}
    )
    assert killed.returncode == -9, killed.stderr
    keys = ObjectStore(url).list()
    assert "progress/seal.json" not in keys
    marked = {k for k in keys if k.startswith("progress/shard-") and k.endswith(".json")}
    assert len(marked) == 3 and shard_key("cls", 3, 2) in keys
    with pytest.raises(ProteusError, match="not sealed"):
        Cache(url)

    again = run_cli(*_extract_args(world, url), env_extra=env)
    assert again.returncode == 0, again.stderr
    ours, theirs = _all_targets(Cache(url)), _all_targets(Cache(world / "local"))
    assert all(np.array_equal(ours[n], theirs[n]) for n in theirs)
    check = run_cli("cache", "verify", url, env_extra=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert not list(Path(env["PROTEUS_STAGING"]).rglob("targets/*/c/*")), "staging left behind"


def test_writer_killed_while_sealing_resumes_to_a_sealed_cache(world, env):
    url = f"s3://{BUCKET}/caches/killed-sealing"
    # Killed after the status table, before the seal record and the sealed root.
    killed = run_cli(*_extract_args(world, url), env_extra=env | {"PROTEUS_FAULT": "seal-upload:1"})
    assert killed.returncode == -9, killed.stderr
    assert "progress/seal.json" not in ObjectStore(url).list()
    again = run_cli(*_extract_args(world, url), env_extra=env)
    assert again.returncode == 0, again.stderr
    cache, reference = Cache(url), Cache(world / "local")
    assert cache.manifest.stats == reference.manifest.stats
    keys = ObjectStore(url).list()
    assert not [k for k in keys if k.endswith(".stats.npz")]  # merged, then deleted


def test_a_flipped_byte_on_the_server_is_named_by_verify(remote, env):
    url = f"s3://{BUCKET}/caches/flipped"
    copy_prefix(remote, url)
    store = ObjectStore(url)
    key = shard_key("patch", 3, 3)
    data = bytearray(store.get(key))
    data[100] ^= 0x40  # inside chunk 0's values
    store.put(key, bytes(data))

    check = run_cli("cache", "verify", url, env_extra=env)
    assert check.returncode != 0
    assert "DAMAGED  targets/patch shard 3: chunk 0 fails its crc32c" in check.stdout
    assert check.stdout.count("DAMAGED") == 1, check.stdout

    cache = Cache(url)
    cache.read("patch", np.arange(6))  # shards 0-2 are sound
    with pytest.raises(ProteusError, match=r"targets/patch shard 3 is damaged .*crc32c"):
        cache.read("patch", np.array([6]))


def test_two_trainers_share_one_shard_cache(world, remote, env, tmp_path):
    shared = tmp_path / "node-shards"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proteus",
                *train_args(None, tmp_path / f"run{i}", "--cache", remote),
                "--shard-cache",
                str(shared),
                "--max-steps",
                "6",
            ],
            env=cli_env() | env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    local = run_cli(*train_args(world / "local", tmp_path / "local", "--max-steps", "6"))
    assert local.returncode == 0, local.stderr
    losses = [[r["loss"] for r in read_log(tmp_path / run)] for run in ("run0", "run1", "local")]
    assert losses[0] == losses[1] == losses[2]
    mirrors = [p for p in shared.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(mirrors) == 1  # one copy per node, not one per trainer
    fetched = [p for p in mirrors[0].rglob("targets/*/c/**/*") if p.is_file()]
    assert fetched and not [p for p in fetched if p.name.startswith(".")]
    # Each shard file once, each the server's bytes.
    store = ObjectStore(remote)
    for path in fetched:
        assert path.read_bytes() == store.get(path.relative_to(mirrors[0]).as_posix())


@pytest.mark.parametrize(
    ("url", "change", "message"),
    [
        (f"s3://no-such-bucket-{os.getpid()}/c", {}, "the bucket does not exist"),
        (f"s3://{BUCKET}/c", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "cannot reach the store"),
        (
            f"s3://{BUCKET}/c",
            {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
            "no credentials found",
        ),
    ],
    ids=["missing-bucket", "unreachable-endpoint", "no-credentials"],  # the same in every worker
)
def test_bad_store_settings_get_one_line_errors(world, env, url, change, message):
    """Writing (extract --out) and reading (train --cache) both say what is wrong."""
    base = {k: v for k, v in (env | change).items() if v}
    for args, option in (
        (_extract_args(world, url), "--out"),
        (train_args(None, world / "run", "--cache", url), "--cache"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "proteus", *args],
            env={k: v for k, v in cli_env().items() if k not in change} | base,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and option in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_tar_shards_on_the_server_extract_and_train_on_another_node(env, tmp_path, monkeypatch):
    shards = imagegen.tar_shards(tmp_path / "wds")
    weights = imagegen.save_teacher_weights("tiny_dinov2", tmp_path / "w.safetensors")
    tars = ObjectStore(f"s3://{BUCKET}/imagenet-like")
    for path in sorted(shards.glob("*.tar")):
        tars.put(path.name, path)
    data = f"s3://{BUCKET}/imagenet-like/train-{{000000..000001}}.tar"
    url = f"s3://{BUCKET}/caches/from-tars"
    run = run_cli(*cli_args(data, url, weights, "--views", "2"), env_extra=env)
    assert run.returncode == 0, run.stderr
    local = run_cli(*cli_args(shards, tmp_path / "local", weights, "--views", "2"))
    assert local.returncode == 0, local.stderr

    # Another node: its own, empty shard cache; the tars come from the store again.
    monkeypatch.setenv("PROTEUS_SHARD_CACHE", str(tmp_path / "node2"))
    cache, reference = Cache(url), Cache(tmp_path / "local")
    assert cache.manifest.dataset.root == f"s3://{BUCKET}/imagenet-like"
    assert cache.manifest.dataset.fingerprint == reference.manifest.dataset.fingerprint
    ours, theirs = _all_targets(cache), _all_targets(reference)
    assert all(np.array_equal(ours[n], theirs[n]) for n in theirs)
    assert cache.images.path.tolist() == reference.images.path.tolist()
    assert np.array_equal(cache.encoded(3), reference.encoded(3))  # a member, fetched
    # A third node, told by --shard-cache: targets and tars both land there.
    train(url, tmp_path / "from-s3", max_steps=3, shard_cache=tmp_path / "node3")
    train(tmp_path / "local", tmp_path / "from-disk", max_steps=3)
    losses = [[r["loss"] for r in read_log(tmp_path / run)] for run in ("from-s3", "from-disk")]
    assert losses[0] == losses[1]

    def tars(node: str) -> list[str]:
        return sorted(p.name for p in (tmp_path / node).glob("*/*.tar"))

    assert tars("node2") == ["train-000001.tar"]  # only the shard of the one image read
    assert tars("node3") == ["train-000000.tar", "train-000001.tar"]
    assert list((tmp_path / "node3").glob("*/targets/patch/c/*/*/*"))


def test_a_cache_on_the_server_grows_as_a_local_one(world, env, tmp_path):
    url = f"s3://{BUCKET}/caches/grows"
    local = tmp_path / "local"
    for views in ("2", "4"):
        for out, extra in ((url, env), (str(local), None)):
            args = [*_extract_args(world, out), "--views", views]
            run = run_cli(*args, env_extra=extra)
            assert run.returncode == 0, run.stderr
    # Killed while laying out the new views, then the same command: as if never killed.
    killed = f"s3://{BUCKET}/caches/grows-killed"
    assert run_cli(*_extract_args(world, killed), "--views", "2", env_extra=env).returncode == 0
    fault = env | {"PROTEUS_FAULT": "grow:1"}
    assert run_cli(*_extract_args(world, killed), "--views", "4", env_extra=fault).returncode == -9
    assert run_cli(*_extract_args(world, killed), "--views", "4", env_extra=env).returncode == 0
    reference = Cache(local)
    for grown in (Cache(url), Cache(killed)):
        assert grown.manifest.counts == reference.manifest.counts
        assert grown.manifest.grown_from[0]["views_per_image"] == 2
        ours, theirs = _all_targets(grown), _all_targets(reference)
        assert all(np.array_equal(ours[n], theirs[n]) for n in theirs)
    check = run_cli("cache", "verify", url, env_extra=env)
    assert check.returncode == 0, check.stdout + check.stderr
