"""The manifest in human form: ``proteus cache info`` and the end-of-extract summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from proteus.common.cache.manifest import Encoding, Manifest
from proteus.common.views.records import AugPolicy


def info_lines(path: Path | str, m: Manifest) -> list[str]:
    policy = ", ".join(f"{k}={_short(v)}" for k, v in m.policy.items())
    targets = ", ".join(
        f"{name} {'×'.join(map(str, shape))} {_encoding(m.encoding.get(name))}"
        for name, shape in m.targets.items()
    )
    grid = "×".join(map(str, m.grid))
    dataset = m.dataset
    lines = [
        f"cache      {path}",
        f"state      {m.state} (format v{m.format_version}, written by proteus "
        f"{m.proteus_version})",
        f"teacher    {m.teacher} [{m.teacher_family}] dim {m.embed_dim}, patch {m.patch_size}, "
        f"grid {grid}, layers {list(m.layers) or 'none'}",
        f"weights    {m.weights_source}",
        f"           sha256 {m.weights_sha256}",
        f"pixels     {m.image_size}px, mean {_floats(m.mean)}, std {_floats(m.std)}, "
        f"{m.renderer.name} {m.renderer.dali_version} on {m.renderer.device}, ops revision "
        f"{m.render_revision}" + ("" if m.renderer.revision else " (recorded before revisions)"),
        f"views      K={m.views_per_image} per image, seed {m.seed}",
        *_holdout_lines(m),
        f"policy     {policy}",
        f"augment    {_augment(m.policy)}",
        *(
            [f"           reused from {m.views_from['cache']} (--views-from)"]
            if m.views_from
            else []
        ),
        f"targets    {targets}; {m.shard_views} views per shard; {m.codec}",
        *[line for name, p in m.pca.items() for line in _pca_lines(name, p)],
        *_stats_lines(m),
        f"compute    {m.precision} on {m.extract.get('device', '?')}, "
        f"{m.extract.get('batch_size', '?')} views per forward",
        f"dataset    {dataset.kind} at {dataset.root}, {len(dataset.classes)} classes",
        f"           fingerprint {dataset.fingerprint}",
    ]
    return lines + _count_lines(m)


def _pca_lines(name: str, p: dict) -> list[str]:
    """A PCA codec's fit, its rotation (int8) and its fidelity on held-out views."""
    rotation = p.get("rotation")
    lines = [
        f"pca        {name}: K={p['k']} keeps {100 * p['variance_kept']:.2f}% of the "
        f"variance (fitted on {p['sample_views']} views)"
        + (f", coefficients rotated ({rotation['kind']})" if rotation else "")
    ]
    held = p.get("heldout")
    if held:
        lines.append(
            f"           held out ({held['views']} views): cosine mean {held['cosine_mean']:.4f}, "
            f"1st percentile {held['cosine_p1']:.4f}; {100 * held['variance_kept']:.2f}% of "
            "the variance kept, storage included"
        )
    return lines


def summary_lines(path: Path | str, m: Manifest, elapsed: float | None = None) -> list[str]:
    lines = [f"sealed {path}", *_count_lines(m)]
    if elapsed:
        lines.append(f"time       {elapsed:.1f} s for this run")
    return lines


def _holdout_lines(m: Manifest) -> list[str]:
    """What training never samples: the gauge's views (`proteus train --eval-every`)."""
    lines = []
    if m.holdout_views:
        lines.append(f"holdout    {m.holdout_views} held-out views per image (never trained on)")
    if m.holdout_images:
        lines.append(f"holdout    {len(m.holdout_images)} images held out of training")
    for earlier in m.grown_from:
        lines.append(
            f"grown      from K={earlier['views_per_image']} ({earlier['views']} views, "
            f"manifest {earlier['manifest_sha256'][:12]}…)"
        )
    return lines


def _count_lines(m: Manifest) -> list[str]:
    c = m.counts
    views = c.get("views", 0)
    lines = [
        f"images     {c.get('images', '?')} found, {c.get('usable_images', '?')} usable, "
        f"{c.get('skipped_images', len(m.skipped))} skipped",
        f"views      {views} recorded, {c.get('usable_views', '?')} with targets",
    ]
    if "target_bytes" in c:
        per_view = c["target_bytes"] / max(1, views)
        lines.append(
            f"bytes      {_bytes(c['target_bytes'])} of targets, {_bytes(per_view)} per view"
        )
    for item in m.skipped[:10]:
        lines.append(f"skipped    {item['path']}: {item['reason']}")
    if len(m.skipped) > 10:
        lines.append(f"skipped    … and {len(m.skipped) - 10} more (all listed in the manifest)")
    return lines


def _stats_lines(m: Manifest) -> list[str]:
    """Per target: the spread of channel means and stds (the full vectors are in the
    manifest), which is what decides whether --standardize matters."""
    if not m.stats:
        return ["stats      none (extracted before proteus 0.2, or not sealed yet)"]
    lines = []
    for name, s in m.stats.items():
        mean, std = np.asarray(s["mean"]), np.asarray(s["std"])
        lines.append(
            f"stats      {name}: channel mean {mean.mean():+.3g} (|max| {np.abs(mean).max():.3g}),"
            f" std {std.mean():.3g} (min {std.min():.3g}, max {std.max():.3g}) over "
            f"{s['tokens']} tokens"
        )
    return lines


def _augment(policy: dict) -> str:
    p = AugPolicy.from_dict(policy)
    if p.randaug_layers:
        std = f"-mstd{p.randaug_std:g}" if p.randaug_std else ""
        randaug = (
            f"RandAugment rand-m{p.randaug_magnitude:g}{std}-inc1: {p.randaug_layers} "
            f"layers of timm's 15 increasing ops, each with p {p.randaug_prob:g}"
        )
    else:
        randaug = "no RandAugment"
    return (
        f"{randaug}; crops resampled {p.interpolation}; erasing p {p.erase_prob:g} ({p.erase_mode})"
    )


def _encoding(enc: Encoding | None) -> str:
    if enc is None:
        return "(?)"
    return f"({enc.kind}, PCA {enc.pca_k})" if enc.pca_k else f"({enc.kind})"


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


def _floats(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _short(value) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(f"{v:.3g}" for v in value) + ")"
    return f"{value:.3g}" if isinstance(value, float) else str(value)
