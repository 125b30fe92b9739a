"""Pictures of a run: PCA of patch features (image | teacher | student) and loss curves.

The teacher's patch features come from the cache (no teacher is loaded); the student's from
its backbone and its heads on the same rendered views. The teacher's targets and the student's
predictions of them (its feature head) share one basis, the first three principal components
of the teacher's patches shown, so their colours mean the same; the student's backbone
features are shown in their own basis beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Basis:
    """The first three principal components of some features, and their range there."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (3, D)
    lo: np.ndarray  # (3,)
    hi: np.ndarray  # (3,)

    @classmethod
    def fit(cls, features: np.ndarray) -> Basis:
        flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
        mean = flat.mean(0)
        _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
        components = np.pad(vt[:3], ((0, max(0, 3 - len(vt))), (0, 0)))
        comps = (flat - mean) @ components.T
        return cls(mean, components, comps.min(0), comps.max(0))

    def rgb(self, features: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """(V, N, D) → (V, rows, cols, 3) in [0, 1], scaled by the range where it was fitted
        (so features of another model projected here keep the colours' meaning)."""
        flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
        comps = (flat - self.mean) @ self.components.T
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1)
        return np.clip((comps - self.lo) / span, 0, 1).reshape(len(features), *grid, 3)


def pca_rgb(features: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(V, N, D) features -> (V, H, W, 3) in [0, 1]: the first 3 components, min-max scaled."""
    return Basis.fit(features).rgb(features, grid)


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
        out_student = trained.student(images)
        # On the student's own grid: a convnet's feature map as it is, not resampled.
        dense, student_grid = trained.student.native_dense(out_student)
        predicted = _patch_predictions(trained, out_student["patch"])
    student_patch = dense.numpy()
    teacher_patch = cache.read("patch", ids).astype(np.float32)
    teacher_basis = Basis.fit(teacher_patch)
    pixels = images * torch.tensor(m.std)[:, None, None] + torch.tensor(m.mean)[:, None, None]
    shown = pixels.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    rows, cols = m.grid
    columns: list[tuple[str, np.ndarray]] = [
        ("image", shown),
        (f"teacher {m.teacher}: targets", teacher_basis.rgb(teacher_patch, (rows, cols))),
    ]
    if predicted is not None:  # the heads' predictions of those targets, in the same basis
        name, values = predicted
        columns.append(
            (f"student {name}\n(teacher's basis)", teacher_basis.rgb(values, trained.student.grid))
        )
    columns.append(
        (f"student {trained.name} backbone\n(its own basis)", pca_rgb(student_patch, student_grid))
    )
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(ids), len(columns), figsize=(2.5 * len(columns), 2.5 * len(ids)), squeeze=False
    )
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


def _patch_predictions(trained, patch: torch.Tensor) -> tuple[str, np.ndarray] | None:
    """The first teacher's patch targets as the student predicts them (in the teacher's units):
    the feature head on the clean view, else the patch head; None when it has neither."""
    heads = trained.heads[0]
    stats = trained.stats(0)
    for name, head in (("fea head", heads.fea_head), ("patch head", heads.patch_head)):
        if head is not None:
            values = head(patch)
            values = stats.restore("patch", values) if stats else values
            return name, values.float().numpy()
    return None


def plot_dense(
    task: str, shown: list[tuple[np.ndarray, np.ndarray, np.ndarray]], out: Path, title: str
) -> Path:
    """A probe's predictions next to the ground truth: image | truth | prediction per row.
    Segmentation: one colour per class (ignored pixels black); depth: one colour scale per
    row, the truth's valid range, for both (invalid pixels black)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(shown), 3, figsize=(7.5, 2.5 * len(shown)), squeeze=False)
    for row, (image, truth, pred) in enumerate(shown):
        if task == "seg":
            palette = plt.get_cmap("tab20")
            valid = truth < 255
            classes = max(int(truth[valid].max(initial=0)), int(pred.max())) + 1
            paint = [_classes_rgb(truth, palette, classes), _classes_rgb(pred, palette, classes)]
            imshow: dict = {}
        else:
            valid = truth > 0
            lo, hi = (truth[valid].min(), truth[valid].max()) if valid.any() else (0, 1)
            paint = [np.where(valid, truth, np.nan), pred]
            imshow = {"cmap": "magma_r", "vmin": lo, "vmax": hi}
        for col, (name, picture) in enumerate(
            (("image", image), ("truth", paint[0]), ("prediction", paint[1]))
        ):
            ax = axes[row][col]
            ax.imshow(picture, interpolation="nearest", **({} if col == 0 else imshow))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def _classes_rgb(labels: np.ndarray, palette, classes: int) -> np.ndarray:
    colours = np.array([palette(i % 20)[:3] for i in range(classes)] + [(0, 0, 0)])
    return colours[np.where(labels < classes, labels, classes)]


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
