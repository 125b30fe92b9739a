"""Where training's targets come from: sealed caches (``cache.py``), the teacher in the
loop (``online.py``), or a cache whose teacher scores a share of fresh views
(``hybrid.py``), behind one interface (``base.py``). :func:`open_sources` is the one
place that knows which kind a run has."""

from __future__ import annotations

from proteus.common.cache.alignment import check_aligned
from proteus.common.cache.reader import Cache
from proteus.common.models.parts import Hint
from proteus.common.runtime.errors import ProteusError
from proteus.common.storage.shardcache import ShardCacheConfig
from proteus.train.config import TrainConfig
from proteus.train.sources.base import ProbeSet, Rows, Samples, TargetSource, TeacherInfo
from proteus.train.sources.cache import CacheSource
from proteus.train.sources.hybrid import HybridSource
from proteus.train.sources.loop import LoopTeacher
from proteus.train.sources.online import OnlineTeacher

__all__ = [
    "CacheSource",
    "HybridSource",
    "OnlineTeacher",
    "ProbeSet",
    "Rows",
    "Samples",
    "TargetSource",
    "TeacherInfo",
    "open_sources",
    "resolve_hints",
]


def open_sources(cfg: TrainConfig, device, progress: bool) -> tuple[list[TargetSource], str | None]:
    """The run's sources, and the views digest several aligned caches share (None for one):
    a teacher in the loop, caches, or one cache with its teacher (--online-fraction)."""
    # Where remote shards (a remote cache's targets, tar shards of remote --data) go.
    shard_cache = ShardCacheConfig.from_env(cfg.shard_cache, cfg.shard_cache_gb)
    if cfg.online:  # check_source: with --data
        assert cfg.teacher is not None and cfg.data is not None
        teacher = OnlineTeacher(
            cfg.teacher,
            cfg.data,
            weights=cfg.weights,
            image_size=cfg.image_size,
            layers=tuple(sorted({h.layer for h in cfg.hints})),
            policy=cfg.view_policy,
            seed=cfg.seed,
            device=device,
            progress=progress,
            shard_cache=shard_cache,
        )
        return [teacher], None
    # Only the first cache's images are rendered, so only it needs --data.
    caches = [
        Cache(path, data_root=cfg.data if i == 0 else None, shard_cache=shard_cache)
        for i, path in enumerate(cfg.caches)
    ]
    digest = check_aligned(caches) if len(caches) > 1 else None
    sources: list[TargetSource] = [CacheSource(cache) for cache in caches]
    if cfg.hybrid:  # check_source: one cache
        assert cfg.teacher is not None
        m = caches[0].manifest
        loop = LoopTeacher(
            cfg.teacher,
            weights=cfg.weights,
            image_size=m.image_size,
            layers=tuple(
                int(n.removeprefix("layer_")) for n in m.targets if n.startswith("layer_")
            ),
            device=device,
        )
        sources = [HybridSource(CacheSource(caches[0]), loop)]
    return sources, digest


def resolve_hints(
    hints: tuple[Hint, ...], depth: int, sources: list[TargetSource]
) -> tuple[Hint, ...]:
    """Check each hint against the student's depth and the source it targets; a negative
    block counts from the end. Returns the hints with block indices resolved."""
    out = []
    for hint in hints:
        if not -depth <= hint.block < depth:
            raise ProteusError(
                f"--hint {hint}: the student has {depth} blocks, so a block is 0..{depth - 1} "
                "(or negative, from the end)"
            )
        if hint.teacher >= len(sources):
            raise ProteusError(f"--hint {hint}: there are only {len(sources)} --cache")
        source = sources[hint.teacher]
        stored = sorted(n for n in source.info.targets if n.startswith("layer_"))
        if hint.target not in stored:
            raise ProteusError(
                f"--hint {hint}: --cache {source.name} stores no {hint.target} (it has "
                f"{', '.join(stored) or 'no intermediate layers'}); extract with "
                f"--layers {hint.layer}"
            )
        resolved = Hint(hint.block % depth, hint.layer, hint.teacher)
        if resolved in out:
            raise ProteusError(f"--hint {hint}: given twice")
        out.append(resolved)
    return tuple(out)
