"""``run_extract``: lay out or resume a cache, fill this process's shards, seal.

Rank 0 alone creates the cache (probing images, sampling views); every rank then takes the
unfinished shards ``s`` with ``s % world == rank``, and rank 0 seals once all are done.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from proteus.common.cache.codec import STORAGE_KINDS, TargetCodec
from proteus.common.cache.describe import summary_lines
from proteus.common.cache.layout import TARGET_CODEC, shard_bounds
from proteus.common.cache.manifest import (
    CREATING,
    FORMAT_VERSION,
    GROWING,
    SEALED,
    DatasetRecord,
    Manifest,
    RendererRecord,
    describe_mismatch,
    teacher_fields,
)
from proteus.common.cache.publisher import CachePublisher
from proteus.common.cache.reader import Cache
from proteus.common.cache.sink import CacheSink, FolderSink
from proteus.common.cache.writer import CacheWriter
from proteus.common.data.dataset import ImageList, data_root, scan_images
from proteus.common.data.probe import probe_images
from proteus.common.data.table import STATUS_FAILED, STATUS_OK
from proteus.common.models.teachers import Teacher, build_teacher
from proteus.common.models.teachers.placement import spread_layers, teacher_devices
from proteus.common.runtime.distributed import (
    DistInfo,
    barrier,
    close_distributed,
    init_distributed,
    resolve_device,
    share_outcome,
)
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.prefetch import prefetch
from proteus.common.runtime.progress import notice, progress_bar
from proteus.common.runtime.version import __version__
from proteus.common.storage.objectstore import is_url
from proteus.common.views.records import (
    HOLDOUT_VIEW,
    AugPolicy,
    layout_views,
    small_image_advice,
)
from proteus.common.views.renderer import REVISION as RENDER_REVISION
from proteus.common.views.renderer import RenderConfig, Renderer, dali_version, render_device
from proteus.extract.config import ExtractConfig
from proteus.extract.encode import ShardBuffer, ShardEncoder, fit_bases, forward
from proteus.extract.feed import ShardFeed
from proteus.extract.plan import WHOLE_TARGETS, plan_storage, planned


def run_extract(cfg: ExtractConfig) -> Manifest:
    device = resolve_device(cfg.device)
    info = init_distributed(device)
    try:
        return _extract(cfg, device, info)
    finally:
        close_distributed(info)


def _extract(cfg: ExtractConfig, device: str, info: DistInfo) -> Manifest:
    if cfg.dtype is not None and cfg.dtype not in STORAGE_KINDS:
        raise ProteusError(f"--dtype {cfg.dtype}: choose one of {', '.join(STORAGE_KINDS)}")
    source = None
    if cfg.views_from is not None:
        source = Cache(cfg.views_from, option="--views-from")
        cfg = _with_views_of(cfg, source.manifest)
    precision = _resolve_precision(cfg.precision, device)
    sink = open_sink(cfg, info.rank)
    teacher, sha = _placed_teacher(cfg, device, info)
    # One dummy forward and one manifest read serve the plan and the layout.
    targets, existing = _target_shapes(teacher), sink.laid_out()
    plan = plan_storage(cfg, targets, existing)
    cfg = planned(cfg, plan)
    if plan.note and info.is_main:
        notice(plan.note)
    if info.is_main:
        try:
            _prepare(cfg, teacher, targets, precision, device, sha, source, sink, existing)
        except Exception as exc:  # any failure: the other ranks must not wait forever
            share_outcome(info, str(exc) or type(exc).__name__)
            raise
    share_outcome(info, None)

    manifest = sink.laid_out()
    assert manifest is not None  # _prepare laid it out
    if manifest.state == SEALED:
        if info.is_main and cfg.progress:
            print(f"{cfg.out}: already complete (sealed); nothing to do")
        return manifest
    return _fill_and_seal(cfg, manifest, teacher, info, sink)


def open_sink(cfg: ExtractConfig, rank: int) -> CacheSink:
    """Where --out is: an s3://, gs:// or file:// URL is written in local staging and
    uploaded shard by shard; anything else is a folder."""
    if is_url(cfg.out):
        return CachePublisher(str(cfg.out), cfg.staging, rank)
    return FolderSink(Path(cfg.out))


def _fill_and_seal(
    cfg: ExtractConfig,
    manifest: Manifest,
    teacher: Teacher,
    info: DistInfo,
    sink: CacheSink,
) -> Manifest:
    """This process's unfinished shards; then rank 0 seals once every rank is done."""
    writer, done = sink.open_writer(manifest)
    mine = [s for s in range(manifest.num_shards) if s % info.world == info.rank and s not in done]
    started = time.perf_counter()
    if mine:
        _fill_shards(cfg, manifest, writer, teacher, mine, info, sink)
    barrier(info)
    if info.is_main:
        manifest = sink.seal(writer)
        if cfg.progress:
            elapsed = time.perf_counter() - started
            print("\n".join(summary_lines(cfg.out, manifest, elapsed=elapsed)))
    barrier(info)
    sink.finish()
    return manifest


def _placed_teacher(cfg: ExtractConfig, device: str, info: DistInfo) -> tuple[Teacher, str]:
    """The teacher on this process's device (or spread over its GPUs), and its weights' sha256."""
    teacher = build_teacher(
        cfg.teacher,
        image_size=cfg.image_size,
        layers=cfg.layers,
        weights=cfg.weights,
        pretrained=cfg.pretrained,
        registers=cfg.registers,
    )
    sha = teacher.weights_sha256()  # hashed on the CPU, before the move
    spread = teacher_devices(cfg.gpus_per_teacher, info.local_rank, device)
    if spread:  # one teacher over G GPUs (7B-class teachers on small GPUs)
        spread_layers(teacher.model, spread)
    else:
        teacher.to(_torch_device(device, info))
    return teacher, sha


def _with_views_of(cfg: ExtractConfig, source: Manifest) -> ExtractConfig:
    """--views-from: the source cache's view policy, seed, K and image size. Erase boxes are
    recorded in output pixels, so the same records need the same output size."""
    if cfg.image_size not in (None, source.image_size):
        raise ProteusError(
            f"--image-size {cfg.image_size}: --views-from {cfg.views_from} renders its views at "
            f"{source.image_size}px, and reusing them needs the same size; drop --image-size"
        )
    return replace(
        cfg,
        policy=AugPolicy.from_dict(source.policy),
        aug_preset=source.aug_preset or cfg.aug_preset,
        holdout_views=source.holdout.get("views", 0),
        holdout_images=source.holdout.get("images", 0),
        seed=source.seed,
        views=source.views_per_image,
        image_size=source.image_size,
    )


def _prepare(
    cfg: ExtractConfig,
    teacher: Teacher,
    targets: dict[str, list[int]],
    precision: str,
    device: str,
    sha: str,
    source: Cache | None,
    sink: CacheSink,
    existing: Manifest | None,
) -> None:
    """Create the cache, or check that the ``existing`` one (what --out holds) was asked for
    with these options."""
    sink.check_writable()
    images = scan_images(cfg.data)
    manifest = _new_manifest(cfg, teacher, targets, precision, device, images, sha)
    if source is not None:
        manifest.views_from = _check_same_data(cfg, images, source)
    if existing is not None:
        grown = _growth(cfg, existing, manifest)
        if grown is not None:
            _grow(cfg, grown, sink)
            return
        mismatch = describe_mismatch(existing.identity(), manifest.identity())
        if mismatch:
            raise ProteusError(
                f"--out {cfg.out}: holds a cache made with other options ({mismatch}); "
                "use a new --out folder, or the original options to resume it"
            )
        return
    _create(cfg, manifest, images, teacher, source, sink)


def _growth(cfg: ExtractConfig, existing: Manifest, asked: Manifest) -> Manifest | None:
    """The grown manifest when the cache at --out is asked for more views and nothing else
    (or is being grown already); None when it is not a growth (same options: resume it)."""
    if existing.state == GROWING:
        return existing if not describe_mismatch(existing.identity(), asked.identity()) else None
    old, new = existing.identity(), asked.identity()
    if {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)} != {
        "views_per_image"
    }:
        return None
    k, wanted = existing.views_per_image, asked.views_per_image
    if wanted < k:
        raise ProteusError(
            f"--views {wanted}: the cache at --out {cfg.out} holds {k} views per image and a "
            f"cache only grows; train --views {wanted} uses the first {wanted} of them"
        )
    if existing.state != SEALED:
        raise ProteusError(
            f"--views {wanted}: --out {cfg.out} holds an unfinished cache of {k} views per "
            f"image; finish it first (the same command with --views {k}), then grow it"
        )
    grown = Manifest.from_dict(existing.to_dict(), where=cfg.out)
    per_image = sum(count for _, count in existing.view_segments)
    images = existing.counts["views"] // per_image
    grown.grown_from = [
        *existing.grown_from,
        {
            "views_per_image": k,
            "views": existing.counts["views"],
            "manifest_sha256": existing.digest(),
        },
    ]
    grown.views_per_image = wanted
    grown.segments = [*existing.view_segments, [k, wanted - k]]
    grown.counts = {
        "images": existing.counts["images"],
        "views": existing.counts["views"] + images * (wanted - k),
    }
    return grown


def _grow(cfg: ExtractConfig, grown: Manifest, sink: CacheSink) -> None:
    """Lay out the new segment of views (the same pure function of seed, image and view as
    every other) over the images the cache already has views of."""
    writer, _ = sink.open_writer(grown)
    images, views = writer.tables()
    held = np.unique(views.image[: grown.grown_at])
    start, count = grown.view_segments[-1]
    added = layout_views(
        AugPolicy.from_dict(grown.policy),
        grown.seed,
        held,
        np.stack([images.height, images.width], 1)[held],
        [[start, count]],
        grown.image_size,
    )
    before = grown.grown_from[-1]["views_per_image"]
    notice(
        f"--out {cfg.out}: growing the cache from {before} to {grown.views_per_image} views "
        f"per image ({len(added)} new views); the views it has keep their records and bytes"
    )
    sink.grow(grown, added)


def _check_same_data(cfg: ExtractConfig, images: ImageList, source: Cache) -> dict:
    if images.fingerprint() != source.manifest.dataset.fingerprint:
        raise ProteusError(
            f"--data {cfg.data}: not the images --views-from {source.name} was extracted from "
            f"({source.manifest.dataset.root}: paths, labels or file sizes differ); "
            "views can only be reused on the same data"
        )
    return {
        "cache": source.name if source.mirror else str(source.path.resolve()),
        "manifest_sha256": source.manifest.digest(),
        "views_sha256": source.views_digest(),
    }


def _create(
    cfg: ExtractConfig,
    manifest: Manifest,
    images: ImageList,
    teacher: Teacher,
    source: Cache | None,
    sink: CacheSink,
) -> None:
    if source is None:
        table, skipped = probe_images(images, progress=cfg.progress)
        manifest.skipped = [item | {"stage": "probe"} for item in skipped]
        usable = np.flatnonzero(table.status == STATUS_OK)
        if not len(usable):
            raise ProteusError(f"--data {cfg.data}: none of the {len(images)} images is readable")
        short = np.minimum(table.height, table.width)[usable]
        advice = small_image_advice(short, manifest.image_size, cfg.view_policy)
        if advice:
            notice(f"--data {cfg.data}: {advice}")
        manifest.segments, manifest.holdout_images = _holdout(cfg, usable)
        views = layout_views(
            cfg.view_policy,
            cfg.seed,
            usable,
            np.stack([table.height, table.width], 1)[usable],
            manifest.view_segments,
            manifest.image_size,
        )
    else:
        # The source's tables as its probe left them: images that failed in its teacher's
        # pass get their own chance here (this run records its own failures).
        table, views = replace(source.images), source.views
        table.status = np.where(table.status == STATUS_FAILED, STATUS_OK, table.status)
        manifest.segments = source.manifest.segments
        manifest.holdout_images = source.manifest.holdout_images
        manifest.skipped = [s for s in source.manifest.skipped if s.get("stage") == "probe"]
    manifest.counts = {"images": len(images), "views": len(views)}
    bases = None
    if cfg.pca:
        # The basis comes from the teacher on a seeded sample of the views themselves.
        feed = ShardFeed(
            _renderer(cfg, manifest, teacher),
            table,
            views,
            data_root(cfg.data),
            cfg.batch_size,
            manifest.shard_views,
        )
        codecs = {n: TargetCodec.of(manifest, n) for n in manifest.encoding}
        bases, manifest.pca = fit_bases(
            teacher,
            feed,
            codecs,
            cfg.pca_sample,
            cfg.seed,
            manifest.precision,
            cfg.progress,
        )
    sink.create(manifest, table, views, bases)


def _holdout(cfg: ExtractConfig, usable: np.ndarray) -> tuple[list[list[int]], list[int]]:
    """The view table's segments (K training views, then N held-out ones) and the held-out
    images (a seeded choice among the usable)."""
    segments = [[0, cfg.planned_views]]
    if cfg.holdout_views:
        segments.append([HOLDOUT_VIEW, cfg.holdout_views])
    if cfg.holdout_images >= len(usable):
        raise ProteusError(
            f"--holdout-images {cfg.holdout_images}: --data has {len(usable)} usable images; "
            "hold out fewer, so some are left to train on"
        )
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x401D]))
    held = np.sort(rng.choice(usable, cfg.holdout_images, replace=False)).tolist()
    # One block of training views is what caches without held-out views always recorded.
    return (segments if len(segments) > 1 else []), [int(i) for i in held]


def _new_manifest(
    cfg: ExtractConfig,
    teacher: Teacher,
    targets: dict[str, list[int]],
    precision: str,
    device: str,
    images: ImageList,
    sha: str,
) -> Manifest:
    codecs = _codecs(cfg, targets)
    return Manifest(
        format_version=FORMAT_VERSION,
        state=CREATING,
        proteus_version=__version__,
        teacher=cfg.teacher,
        **teacher_fields(teacher, sha),
        renderer=RendererRecord(
            "dali", dali_version(), render_device(device), revision=RENDER_REVISION
        ),
        policy=cfg.view_policy.to_dict(),
        aug_preset=cfg.aug_preset,
        holdout=_holdout_options(cfg),
        seed=cfg.seed,
        views_per_image=cfg.planned_views,
        precision=precision,
        targets=targets,
        dtype=cfg.planned_dtype,
        codec=TARGET_CODEC,
        shard_views=cfg.shard_views,
        dataset=DatasetRecord.of(images),
        extract={"batch_size": cfg.batch_size, "device": device},
        encoding={name: c.to_manifest() for name, c in codecs.items()},
        arrays={
            array: {"shape": list(shape), "dtype": dtype}
            for c in codecs.values()
            for array, (shape, dtype) in c.arrays().items()
        },
    )


def _target_shapes(teacher: Teacher) -> dict[str, list[int]]:
    """Every target's per-view shape, from one dummy forward."""
    size = teacher.image_size
    with torch.no_grad():
        probe = teacher(torch.zeros(1, 3, size, size, device=next(teacher.parameters()).device))
    targets = {"cls": list(probe["cls"].shape[1:]), "patch": list(probe["patch"].shape[1:])}
    if "registers" in probe:
        targets["registers"] = list(probe["registers"].shape[1:])
    return targets | {f"layer_{i}": list(t.shape[1:]) for i, t in probe["layers"].items()}


def _holdout_options(cfg: ExtractConfig) -> dict[str, int]:
    """The manifest's record of --holdout-views/--holdout-images (empty: none)."""
    held = {"views": cfg.holdout_views, "images": cfg.holdout_images}
    return held if any(held.values()) else {}


def _codecs(cfg: ExtractConfig, targets: dict[str, list[int]]) -> dict[str, TargetCodec]:
    """cls and registers stay whole (they are small); token grids (patch, layers) get PCA
    when asked."""
    codecs = {}
    for name, shape in targets.items():
        k = cfg.pca if name not in WHOLE_TARGETS else None
        if k is not None and not 0 < k < shape[-1]:
            raise ProteusError(f"--pca {k}: must be between 1 and {shape[-1] - 1} for {name}")
        codecs[name] = TargetCodec(name, tuple(shape), cfg.planned_dtype, k)
    return codecs


def _fill_shards(
    cfg: ExtractConfig,
    manifest: Manifest,
    writer: CacheWriter,
    teacher: Teacher,
    shards: list[int],
    info: DistInfo,
    sink: CacheSink,
) -> None:
    images, views = writer.tables()
    device = next(teacher.parameters()).device
    # This process's own --data: on several nodes the images may be mounted elsewhere.
    feed = ShardFeed(
        _renderer(cfg, manifest, teacher, info.local_rank),
        images,
        views,
        data_root(cfg.data),
        cfg.batch_size,
        manifest.shard_views,
    )
    encoder = ShardEncoder(writer.codecs(), device)
    carried = manifest.grown_at  # a grown cache: rows below it keep their stored bytes
    total = sum(max(0, b - max(a, carried)) for a, b in (shard_bounds(manifest, s) for s in shards))
    bar = progress_bar(
        total=int(total),
        unit="view",
        desc=f"extract {manifest.teacher}",
        smoothing=0.1,
        disable=not (info.is_main and cfg.progress),
    )
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="proteus-write") as pool:
            pending: Future | None = None
            shard = ShardBuffer(manifest, -1)
            for batch in prefetch(feed.batches(shards, carried), depth=2):
                if batch.shard != shard.index:
                    shard = ShardBuffer(manifest, batch.shard)
                    if shard.start < carried:  # old and new rows: the old ones as stored
                        sink.carry(writer, shard.index)
                        shard.carry(writer.stored_rows(shard.start, carried))
                out = forward(teacher, batch.pixels.to(device), manifest.precision)
                shard.add(batch, encoder.encode(out, batch.failed, shard.stats), images)
                bar.update(batch.stop - batch.start)
                if batch.last:
                    if pending is not None:
                        pending.result()  # at most one shard in flight: bounded memory
                    pending = pool.submit(_write_shard, writer, shard, sink)
            if pending is not None:
                pending.result()
    finally:
        bar.close()  # an error message then starts on a fresh line


def _write_shard(writer: CacheWriter, shard: ShardBuffer, sink: CacheSink) -> None:
    writer.write_shard(shard.index, shard.arrays, shard.failed_images(), shard.stats)
    sink.shard_written(writer, shard.index)


def _resolve_precision(precision: str, device: str) -> str:
    if precision == "auto":
        return "bfloat16" if device == "cuda" else "float32"
    if precision not in ("float32", "bfloat16"):
        raise ProteusError(f"--precision {precision}: choose float32, bfloat16 or auto")
    return precision


def _renderer(cfg: ExtractConfig, manifest: Manifest, teacher: Teacher, gpu: int = 0):
    device = next(teacher.parameters()).device.type
    return Renderer(
        RenderConfig.from_manifest(
            manifest,
            device,
            device_id=gpu,
            threads=cfg.render_threads,
            max_batch=cfg.batch_size,
        )
    )


def _torch_device(device: str, info: DistInfo) -> torch.device:
    return torch.device(f"cuda:{info.local_rank}") if device == "cuda" else torch.device("cpu")
