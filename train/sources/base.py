"""The one interface between the trainer and a teacher's targets.

A sealed cache (``cache.py``) and a teacher in the loop (``online.py``) both implement
:class:`TargetSource`, so the trainer holds a list of sources and never asks which kind it
has. The life of a step, for every source:

- ``views(images, uses, view_ids)``: the view records of this rank's samples (the first
  source's are rendered once for all of them: aligned caches share their views);
- ``fetch(names, view_ids)``: in the loader's background thread, whatever can be had before
  the step (a cache's stored bytes; nothing for a teacher, which needs the pixels);
- ``targets(fetched, pixels, device)``: in the step, every target by name as float32 on
  ``device`` (a cache decodes there; a teacher runs on the pixels).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from proteus.common.cache.stats import TargetStats
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.records import AugPolicy, ViewTable


@dataclass(frozen=True)
class TeacherInfo:
    """What the trainer needs to know of the teacher behind a source."""

    name: str  # registry name or timm:<model>
    family: str  # decides the reference student style and the λ defaults (CLIP: 1/0/0)
    dim: int
    grid: tuple[int, int]  # its patch grid
    image_size: int
    mean: tuple[float, float, float]  # the normalisation of its (and the student's) input
    std: tuple[float, float, float]
    weights_sha256: str
    targets: dict[str, tuple[int, ...]]  # every target it gives: name -> per-view shape
    policy: AugPolicy  # how its views are drawn
    seed: int  # the view seed: records are a pure function of (seed, image, view)
    render_revision: (
        int  # which renderer kernels draw its views (a cache: the ones it was made with)
    )
    digest: str | None = None  # a cache's manifest digest; None for a teacher in the loop
    # A grown cache's digests before each growth, oldest first (extract --views K' on it).
    grown_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rows:
    """The images the sampler draws from, one row each: the image index, its recorded view
    ids in view order (no columns for a teacher in the loop: every use is a new view), and
    its label."""

    images: np.ndarray  # (I,) int64
    view_ids: np.ndarray  # (I, K) int64
    labels: np.ndarray  # (I,) int64

    def __len__(self) -> int:
        return len(self.images)

    def take(self, rows: np.ndarray) -> Rows:
        return Rows(self.images[rows], self.view_ids[rows], self.labels[rows])

    def common(self, other: Rows) -> Rows:
        """The rows whose image is usable in ``other`` too (aligned caches: a view whose image
        failed in one teacher's pass is used by none)."""
        return self.take(np.flatnonzero(np.isin(self.images, other.images)))


@dataclass(frozen=True)
class Samples:
    """What a step (or the gauge) asks of the sources: which view of which image each sample
    is. ``uses``: the u-th use of its image (a teacher in the loop renders view u of it);
    ``view_ids``: the recorded views a cache reads (None without a cache); ``fresh``: with a
    teacher beside a cache (--online-fraction), the samples the teacher scores on a view the
    cache has not recorded."""

    images: np.ndarray  # (B,) int64 image index
    uses: np.ndarray  # (B,) int64
    view_ids: np.ndarray | None = None  # (B,) int64
    fresh: np.ndarray | None = None  # (B,) bool

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class ProbeSet:
    """A fixed set of samples the gauge scores the student on (train/gauge.py): views it
    trained on, held-out views of its training images, views of held-out images."""

    name: str  # trained_views | heldout_views | heldout_images
    samples: Samples


class TargetSource(ABC):
    """One teacher's targets for training. ``name`` is how messages and records call it
    (the --cache as given, or ``online:<teacher>``)."""

    name: str
    info: TeacherInfo
    kind = "source"  # what messages call it: "cache", "teacher"

    @property
    def option(self) -> str:
        """The option that chose it, as messages name it (``--cache PATH``)."""
        return f"--{self.kind} {self.name}"

    @abstractmethod
    def rows(self, views: int | None) -> Rows:
        """Its usable images; ``views``: only the first this many recorded views of each."""

    def check(self, names: tuple[str, ...]) -> None:
        """Fail before the first step if any of these targets cannot be given."""
        missing = [name for name in names if name not in self.info.targets]
        if missing:
            raise ProteusError(
                f"{self.option}: the chosen losses need {', '.join(missing)} targets, which this "
                f"{self.kind} lacks (it has {', '.join(self.info.targets)}); set their "
                "--lambda-* to 0 or re-extract"
            )

    @abstractmethod
    def statistics(self, names: tuple[str, ...]) -> TargetStats:
        """The per-channel statistics to standardise these targets with (--standardize)."""

    @abstractmethod
    def views(self, samples: Samples) -> ViewTable:
        """The view records of these samples."""

    @abstractmethod
    def encoded(self, image: int) -> np.ndarray:
        """The bytes the renderer decodes for image ``image``."""

    @abstractmethod
    def fetch(self, names: tuple[str, ...], samples: Samples) -> object:
        """Before the step, in the loader's thread: what ``targets`` will need."""

    @abstractmethod
    def targets(
        self, fetched: object, pixels: torch.Tensor, device: torch.device
    ) -> dict[str, torch.Tensor]:
        """In the step: each target by name, float32 on ``device``."""

    @abstractmethod
    def probe_sets(self, rows: Rows, count: int, seed: int) -> tuple[list[ProbeSet], list[str]]:
        """The gauge's fixed sets of at most ``count`` samples each, and a line for each set
        it cannot offer (a cache without held-out views)."""

    @abstractmethod
    def render_failed(self, step: int, reason: str) -> ProteusError:
        """The message for a batch of its views that DALI could not render."""

    def pca_codecs(self, names: tuple[str, ...]) -> dict:
        """Of ``names``, the targets stored as PCA coefficients, with their fitted codecs
        (train/target_space.py); none but a cache's."""
        return {}

    # Targets ``targets`` gives as their PCA coefficients instead of decoded (a student
    # learns them in coefficient space; the stream sets it before the first step).
    coefficients: frozenset[str] = frozenset()

    @property
    def remote(self) -> bool:
        """Whether ``prefetch`` does anything (a cache on an object store)."""
        return False

    def prefetch(self, names: tuple[str, ...], view_ids: np.ndarray) -> None:  # noqa: B027
        """Start fetching what later steps will read (a remote cache's shards); nothing by
        default: most sources have everything at hand."""

    def close(self) -> None:  # noqa: B027
        """Release what it holds (a remote cache's background fetches); nothing by default."""


def pick(ids: np.ndarray, count: int, seed: int, local: bool = False) -> np.ndarray:
    """A seeded sample of at most ``count`` of ``ids``, sorted. ``local``: consecutive ids
    from a seeded start instead (a remote cache then fetches a shard or two, not ``count``)."""
    ids = np.sort(np.asarray(ids, dtype=np.int64))
    if len(ids) <= count:
        return ids
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6A06E]))
    if local:
        start = int(rng.integers(0, len(ids) - count + 1))
        return ids[start : start + count]
    return np.sort(rng.choice(ids, count, replace=False))
