"""Pictures of a run: PCA of patch features (image | teacher | student) and loss curves.

The teacher's patch features come from the cache (no teacher is loaded); the student's from
its backbone on the same rendered views. Each model's first three principal components,
fitted over all patches shown, become RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from proteus.common.cache.reader import Cache
from proteus.common.runs.logs import read_log
from proteus.common.runtime.errors import ProteusError
from proteus.common.storage.objectstore import is_url
from proteus.common.views.renderer import RenderConfig, Renderer
from proteus.evaluate.models import load_trained_student


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def pca_rgb(features: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(V, N, D) features -> (V, H, W, 3) in [0, 1]: the first 3 components, min-max scaled."""
    v, _, d = features.shape
    flat = features.reshape(-1, d).astype(np.float64)
    flat = flat - flat.mean(0)
    _, _, vt = np.linalg.svd(flat, full_matrices=False)
    comps = flat @ vt[:3].T
    if comps.shape[1] < 3:
        comps = np.pad(comps, ((0, 0), (0, 3 - comps.shape[1])))
    lo, hi = comps.min(0), comps.max(0)
    comps = (comps - lo) / np.where(hi > lo, hi - lo, 1)
    return comps.reshape(v, *grid, 3)


def plot_pca(checkpoint: Path, out: Path, cache_path: Path | None = None, views: int = 4) -> Path:
    trained = load_trained_student(checkpoint)
    recorded = trained.checkpoint.teachers[0].source.path
    if cache_path is None and recorded.startswith("online:"):
        raise ProteusError(
            f"--checkpoint {checkpoint}: trained online ({recorded}), so there is no cache to "
            "take the teacher's features from; pass --cache with a cache of that teacher"
        )
    cache = Cache(cache_path or (recorded if is_url(recorded) else Path(recorded)))
    m = cache.manifest
    if "patch" not in m.targets:
        raise ProteusError(f"{cache.name}: no patch targets to picture")
    first_views = cache.usable_views()[:: max(1, m.views_per_image)]  # view 0 of each image
    # Evenly spread over the (sorted, so class-grouped) images: several classes, not one.
    ids = first_views[
        np.linspace(0, len(first_views) - 1, min(views, len(first_views))).astype(int)
    ]
    table = cache.views[ids]
    encoded = [cache.encoded(i) for i in table.image]
    renderer = Renderer(RenderConfig.from_manifest(m, max_batch=len(ids)))
    images = renderer.render(encoded, table)
    with torch.no_grad():
        # On the student's own grid: a convnet's feature map as it is, not resampled.
        dense, student_grid = trained.student.native_dense(trained.student(images))
    student_patch = dense.numpy()
    teacher_patch = cache.read("patch", ids).astype(np.float32)
    pixels = images * torch.tensor(m.std)[:, None, None] + torch.tensor(m.mean)[:, None, None]
    shown = pixels.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    rows, cols = m.grid
    columns: list[tuple[str, np.ndarray]] = [
        ("image", shown),
        (f"teacher {m.teacher}", pca_rgb(teacher_patch, (rows, cols))),
        (f"student {trained.name}", pca_rgb(student_patch, student_grid)),
    ]
    plt = _pyplot()
    fig, axes = plt.subplots(len(ids), 3, figsize=(7.5, 2.5 * len(ids)), squeeze=False)
    for row in range(len(ids)):
        for col, (title, pictures) in enumerate(columns):
            ax = axes[row][col]
            ax.imshow(pictures[row], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def plot_losses(run: Path, out: Path) -> Path:
    records = read_log(run)
    if not records:
        raise ProteusError(f"{run}: no log.jsonl with steps to plot")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in records]
    # Every logged part: token/fea/patch/hint, per teacher (".t2") when there are several.
    keys = [k for k in records[-1] if k == "loss" or k.startswith("loss_")]
    for key in keys:
        values = [r.get(key, 0.0) for r in records]
        if any(values):
            ax.plot(steps, values, label=key, linewidth=1.5 if key == "loss" else 1)
    ax.set_xlabel("step")
    ax.set_ylabel("MSE")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(str(run))
    fig.tight_layout()
    return _save(fig, out)


GAUGE = "gauge/"


def plot_gauge(run: Path, out: Path) -> Path | None:
    """The gauge's loss on each set against the step: trained views against held-out ones
    (train/gauge.py); the training loss of each step beside them. None: nothing gauged."""
    records = read_log(run)
    scored = [r for r in records if any(k.startswith(GAUGE) for k in r)]
    if not scored:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(
        [r["step"] for r in records],
        [r["loss"] for r in records],
        color="0.8",
        linewidth=0.8,
        label="training batches",
    )
    sets = dict.fromkeys(k.split("/")[1] for r in scored for k in r if k.startswith(GAUGE))
    for name in sets:
        key = f"{GAUGE}{name}/loss"
        points = [(r["step"], r[key]) for r in scored if key in r]
        ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=name.replace("_", " "))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{run}: trained vs held-out views")
    fig.tight_layout()
    return _save(fig, out)


def _save(fig, out: Path) -> Path:
    plt = _pyplot()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    except OSError as exc:
        raise ProteusError(f"{out}: cannot write the picture ({exc.strerror or exc})") from exc
    finally:
        plt.close(fig)
    return out
