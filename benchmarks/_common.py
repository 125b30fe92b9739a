"""Shared helpers for the benchmarks: timing, synthetic caches in the real layout, tables.

Absolute numbers on shared machines are noise; every benchmark prints ratios against a
baseline measured in the same run, on the same data, right before or after.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def timed(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median seconds per call (the median resists the other tenants of a shared box)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def timed_alternating(
    fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds of each call of each of ``fns``, their passes interleaved (A B, then B A, …),
    so that pass k of every one ran next to pass k of the others."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns.items())
    for k in range(repeats):
        for name, fn in order if k % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return samples


def paired_ratio(base: list[float], other: list[float]) -> float:
    """Speed of ``other`` over ``base`` from interleaved passes' seconds: the median of the
    passes' own ratios. A shared machine's speed drifts by a quarter within minutes here, and
    adjacent passes share the drift where the two medians need not."""
    return statistics.median(b / o for b, o in zip(base, other, strict=True))


def synthetic_targets(
    folder: Path,
    views: int,
    per_view: tuple[int, ...],
    dtype: str = "float16",
    shard_views: int = 256,
    seed: int = 0,
) -> np.ndarray:
    """A target array written exactly as extraction writes one (whole sharded chunks with
    crc32c), plus the same bytes as a contiguous .npy for the memmap baseline."""
    import zarr

    from proteus.common.cache.layout import create_target

    rng = np.random.default_rng(seed)
    root = zarr.open_group(str(folder), mode="w", zarr_format=3)
    arr = create_target(root, "patch", views, per_view, dtype, shard_views)
    whole = np.lib.format.open_memmap(
        folder / "baseline.npy", mode="w+", dtype=dtype, shape=(views, *per_view)
    )
    for start in range(0, views, shard_views):
        stop = min(start + shard_views, views)
        block = rng.standard_normal((stop - start, *per_view), dtype=np.float32).astype(dtype)
        arr[start:stop] = block
        whole[start:stop] = block
    whole.flush()
    return np.load(folder / "baseline.npy", mmap_mode="r")


def table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines.append("  ".join("-" * widths[c] for c in columns))
    lines += ["  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return "" if value is None else str(value)


def synthetic_cache(
    folder: Path,
    views: int,
    per_view: dict[str, tuple[int, ...]],
    dtype: str = "float16",
    shard_views: int = 256,
    seed: int = 0,
    pca_k: int | None = None,
):
    """A sealed cache of random targets written by the real CacheWriter (one view per
    "image"), for benchmarks that need the whole reader but no teacher. ``pca_k`` stores every
    target but cls as K PCA coefficients, as ``extract --pca K`` does (basis fitted on the
    random tokens themselves)."""
    from proteus.common.cache.codec import TargetCodec, fit_pca
    from proteus.common.cache.manifest import (
        CREATING,
        FORMAT_VERSION,
        DatasetRecord,
        Manifest,
        RendererRecord,
    )
    from proteus.common.cache.reader import Cache
    from proteus.common.cache.stats import StatsSums
    from proteus.common.cache.writer import CacheWriter
    from proteus.common.data.table import ImageTable
    from proteus.common.runtime.version import __version__
    from proteus.common.views.records import AugPolicy, sample_views

    codecs = {
        name: TargetCodec(name, tuple(shape), dtype, None if name == "cls" else pca_k)
        for name, shape in per_view.items()
    }
    rng = np.random.default_rng(seed)
    bases, pca_info = {}, {}
    for codec in codecs.values():
        if codec.pca_k:
            sample = rng.standard_normal((4096, codec.shape[-1]), dtype=np.float32)
            bases[codec.name], kept = fit_pca(_torch(sample), codec.pca_k)
            pca_info[codec.name] = {"k": codec.pca_k, "variance_kept": kept, "sample_views": 0}
    images = ImageTable(
        path=np.array([f"{i:07d}.jpg" for i in range(views)]),
        label=np.zeros(views, np.int64),
        height=np.full(views, 256, np.int32),
        width=np.full(views, 256, np.int32),
        transcode=np.zeros(views, bool),
        status=np.zeros(views, np.uint8),
    )
    table = sample_views(AugPolicy(), seed, np.arange(views), np.full((views, 2), 256), 1, 224)
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        state=CREATING,
        proteus_version=__version__,
        teacher="synthetic",
        teacher_family="dinov2",
        weights_source="random",
        weights_sha256="0" * 64,
        embed_dim=per_view["cls"][-1],
        patch_size=14,
        grid=(16, 16),
        layers=(),
        image_size=224,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        renderer=RendererRecord("dali"),
        policy=AugPolicy().to_dict(),
        seed=seed,
        views_per_image=1,
        precision="float32",
        targets={n: list(s) for n, s in per_view.items()},
        dtype=dtype,
        codec="",
        shard_views=shard_views,
        dataset=DatasetRecord("flat", str(folder), ""),
        counts={"images": views, "views": views},
        encoding={n: c.to_manifest() for n, c in codecs.items()},
        arrays={
            a: {"shape": list(s), "dtype": d}
            for c in codecs.values()
            for a, (s, d) in c.arrays().items()
        },
        pca=pca_info,
    )
    writer = CacheWriter.create(folder, manifest, images, table, fitted=bases)
    for shard in range(manifest.num_shards):
        rows = min(shard_views, views - shard * shard_views)
        arrays = {}
        stats = StatsSums()
        for codec in codecs.values():
            values = _torch(rng.standard_normal((rows, *codec.shape), dtype=np.float32))
            stats.update(codec.name, values)
            encoded = codec.fit(bases.get(codec.name)).encode(values)
            arrays |= {k: v.numpy() for k, v in encoded.items()}
        writer.write_shard(shard, arrays, [], stats)
    writer.seal()
    return Cache(folder)


def _torch(array: np.ndarray):
    import torch

    return torch.from_numpy(array)


def target_loop_speed(
    caches: list,
    student: str,
    image_size: int,
    steps: int,
    batch: int,
    device: str = "cpu",
    label: str = "",
    baseline: str = "stored",
    fresh: Callable[[], list] | None = None,
    coefficients: bool = False,
) -> list[dict]:
    """steps/s of a student's training step (all heads, the real loss, AdamW; bf16 autocast
    on CUDA) fed by the trainer's target path (stored bytes read in a prefetch thread, moved to
    ``device``, decoded there) against the same step fed from memory. ``baseline``: "stored"
    keeps the stored bytes in host memory and decodes them each step (the read alone is
    compared); "decoded" keeps float targets already on ``device`` (read, transfer and decode
    are all compared). Images are pre-rendered in both; one teacher per cache. ``fresh``:
    each timed pass reads from the caches it returns (remote caches on an empty shard cache:
    a cold start), asking for the next 4 steps' shards ahead as the trainer does.
    ``coefficients``: a PCA-coded patch target is learnt as its K coefficients
    (train/target_space.py: heads predict K, no decode to teacher width), in both loops."""
    import torch

    from proteus.common.models.parts import Lambdas
    from proteus.common.models.students import build_student
    from proteus.common.runtime.prefetch import prefetch
    from proteus.train.distiller import Distiller
    from proteus.train.objective import Objective

    torch.manual_seed(0)
    on = torch.device(device)
    names = ("cls", "patch")
    in_k = [coefficients and bool(c.codec("patch").pca_k) for c in caches]
    heads = [
        (
            c.manifest.embed_dim,
            Objective(Lambdas(), coefficients=(("patch", c.manifest.embed_dim),) if k else ()),
            {},
        )
        for c, k in zip(caches, in_k, strict=True)
    ]
    dense = [c.codec("patch").pca_k if k else None for c, k in zip(caches, in_k, strict=True)]
    model = Distiller(build_student(student, image_size), heads, dense_dims=dense).to(on)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, image_size, image_size, device=on)
    tokens = int(np.prod(model.student.grid))
    masks = torch.zeros(batch // 2, tokens, dtype=torch.bool, device=on)
    masks[:, ::2] = True
    views = caches[0].manifest.counts["views"]
    rng = np.random.default_rng(0)
    plan = [rng.choice(views, batch, replace=False) for _ in range(steps)]

    def decode(cache, name, stored):
        moved = {k: torch.from_numpy(v).to(on, non_blocking=True) for k, v in stored.items()}
        codec = cache.codec(name).to(on)
        if coefficients and name == "patch" and codec.pca_k:
            return codec.decode_coefficients(moved)
        return codec.decode(moved)

    def step(targets):
        with torch.autocast(on.type, torch.bfloat16, enabled=on.type == "cuda"):
            parts = model(images, masks, targets)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()

    def synced(fn):
        def run():
            fn()
            if on.type == "cuda":
                torch.cuda.synchronize()

        return run

    from_memory = _memory_loop(caches, names, plan, step, decode, on, baseline)

    def from_cache():
        read_from = fresh() if fresh else caches
        for batch_stored in prefetch(planned_reads(read_from, names, plan, bool(fresh)), depth=2):
            step(
                [
                    {n: decode(c, n, s[n]) for n in names}
                    for c, s in zip(read_from, batch_stored, strict=True)
                ]
            )

    seconds = timed_alternating({"memory": synced(from_memory), "cache": synced(from_cache)}, 6)
    base = steps / statistics.median(seconds["memory"])
    fed = steps / statistics.median(seconds["cache"])
    ratio = paired_ratio(seconds["memory"], seconds["cache"])
    return [
        {"loop": f"{label}: targets in memory (baseline)", "steps/s": base, "ratio": 1.0},
        {"loop": f"{label}: targets from the cache", "steps/s": fed, "ratio": ratio},
    ]


def planned_reads(caches: list, names: tuple[str, ...], plan: list[np.ndarray], ahead: bool):
    """Each step's stored targets per cache; with ``ahead``, the next 4 steps' shards are
    asked for first (TrainBatches.FETCH_AHEAD)."""
    for k, ids in enumerate(plan):
        coming = plan[k + 1 : k + 5]
        if ahead and coming:
            for cache in caches:
                cache.prefetch(names, np.concatenate(coming))
        yield [{n: c.read_stored(n, ids) for n in names} for c in caches]


def _memory_loop(caches, names, plan, step, decode, on, baseline: str):
    """target_loop_speed's baseline: every view's targets held in memory (see there)."""
    import torch

    everything = np.arange(caches[0].manifest.counts["views"])
    stored = [{n: c.read_stored(n, everything) for n in names} for c in caches]
    pairs = list(zip(caches, stored, strict=True))
    if baseline == "decoded":
        held = [{n: decode(c, n, s[n]) for n in names} for c, s in pairs]

        def decoded():
            for ids in plan:
                index = torch.from_numpy(ids).to(on)
                step([{n: t[index] for n, t in h.items()} for h in held])

        return decoded

    def undecoded():
        for ids in plan:
            step(
                [
                    {n: decode(c, n, {k: v[ids] for k, v in s[n].items()}) for n in names}
                    for c, s in pairs
                ]
            )

    return undecoded


# The timm architecture of the benchmark student, by patch size.
_BENCH_ARCH = {14: "vit_small_patch14_dinov2", 16: "vit_small_patch16_224"}


def bench_vit(patch: int) -> str:
    """Registers (idempotently) and names the 4-block, 96-wide student with this patch size:
    /14 is what B2 and B8 train, /16 what B5 and B6 train."""
    from proteus.common.models.students import StudentSpec, register_student

    spec = StudentSpec(
        f"bench_vit{patch}",
        _BENCH_ARCH[patch],
        patch,
        96,
        {"embed_dim": 96, "depth": 4, "num_heads": 3},
    )
    return register_student(spec).name


def train_parser(
    doc: str, steps: int, rounds: int | None = None, teacher: str | None = "effnet_lite0"
) -> argparse.ArgumentParser:
    """The options the training benchmarks share: ``--out``, ``--steps``, ``--batch-size``,
    and where they have them ``--rounds`` and ``--teacher`` (the packaged EfficientNet-Lite0,
    which runs offline)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="work folder (reused)")
    parser.add_argument("--steps", type=int, default=steps, help="training steps a run")
    if rounds is not None:
        parser.add_argument(
            "--rounds", type=int, default=rounds, help="rounds, alternating the order"
        )
    parser.add_argument("--batch-size", type=int, default=64)
    if teacher is not None:
        parser.add_argument("--teacher", default=teacher, help="the cache's teacher")
    return parser


def quiet_train(**fields):
    """A TrainConfig for a benchmark row: on the CPU, no progress bars, no TensorBoard, both
    cores rendering; ``fields`` set the rest (and may override these)."""
    from proteus.train.config import TrainConfig

    quiet = {"device": "cpu", "tensorboard": False, "progress": False, "render_threads": 2}
    return TrainConfig(**(quiet | fields))


def finished(run: Path) -> bool:
    """Whether a benchmark row's run folder holds a finished run (so the row is reused)."""
    from proteus.common.runs.folder import RunFolder

    return RunFolder(run).finished()


def bytes_per_image(cache: Path | None, views: int | None) -> int:
    """Target bytes per image of the first ``views`` views (all: None) of a cache."""
    if cache is None:
        return 0
    from proteus.common.cache.reader import Cache

    m = Cache(cache).manifest
    per_view = m.counts["target_bytes"] / m.counts["views"]
    return round(per_view * (views or m.views_per_image))


def extract_quietly(teacher: str, data: Path, out: Path, image_size: int, **options) -> Path:
    """One CPU extraction without progress bars, for a benchmark row (a sealed cache at
    ``out`` is reused, an unfinished one resumed)."""
    from proteus.extract.config import ExtractConfig
    from proteus.extract.runner import run_extract

    config = ExtractConfig(
        teacher=teacher,
        data=data,
        out=out,
        image_size=image_size,
        device="cpu",
        progress=False,
        **options,
    )
    run_extract(config)
    return out
