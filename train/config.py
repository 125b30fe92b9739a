"""The resolved options of one training run; written to the run folder as config.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from proteus.common.models.heads import Hint
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.records import AugPolicy
from proteus.train.recipe import Recipe, get_recipe

PerTeacher = float | tuple[float, ...] | None  # one value for every teacher, or one per cache


@dataclass(frozen=True)
class RecipeValues:
    """The options a recipe supplies, as a resolved config holds them: typed without None."""

    min_lr: float
    warmup_lr: float
    weight_decay: float
    warmup_epochs: float
    drop_path: float
    ema_decay: float
    repeated_aug: int


@dataclass(frozen=True)
class TrainConfig:
    # A sealed cache written by `proteus extract`, or several aligned ones (one per teacher,
    # same views: `extract --views-from`); the first one's images and mean/std are rendered.
    # None: online training with `teacher` in the loop on `data`.
    cache: Path | str | tuple[Path | str, ...] | None  # str: an s3://, gs:// or file:// URL
    student: str  # a registered student (`proteus students`) or timm:<any timm backbone>
    out: Path  # run folder: checkpoints, logs, resolved config
    teacher: str | None = None  # online: registry name or timm:<model>, run at every step
    weights: Path | None = None  # online: the teacher's local weights file
    image_size: int | None = None  # online: input size [default: the teacher's]
    # Online: how each use's fresh view is drawn (a cache keeps the policy it was extracted with).
    policy: AugPolicy = field(default_factory=AugPolicy)
    # The named set of defaults (train/recipe.py) for every option below left at None.
    recipe: str = "proteus"
    epochs: int = 300  # Proteus recipe length; --max-steps overrides it
    max_steps: int | None = None  # stop after this many optimizer steps (smoke tests, sweeps)
    batch_size: int = 128  # per process; the global batch is this × world size
    lr: float | None = None  # None: the recipe's lr per 512 × global batch / 512
    min_lr: float | None = None  # floor of the cosine schedule
    warmup_lr: float | None = None  # where the warm-up starts (epoch schedule)
    weight_decay: float | None = None
    warmup_epochs: float | None = None
    drop_path: float | None = None
    ema_decay: float | None = None  # EMA of the student weights; 0 turns it off
    # Use only the first this many recorded views of each image: a K-view cache holds the
    # views of every smaller K (records are a pure function of seed, image and view index).
    views: int | None = None
    # Each image this many times per epoch, each time another view (DeiT's RASampler).
    repeated_aug: int | None = None
    grad_clip: float | None = None  # max gradient norm; None: no clipping
    lambda_token: PerTeacher = None  # None: 1, or per the teacher (CLIP: 1/0/0)
    lambda_fea: PerTeacher = None
    lambda_patch: PerTeacher = None
    lambda_hint: PerTeacher = None  # None: 1; weight of each hint's MSE
    hints: tuple[Hint, ...] = ()  # student block ↔ teacher layer_<i> pairs
    loss: str = "mse"  # mse (Proteus) | cosine-smooth-l1 (RADIO): how each part compares
    # Learn (t − mean) / std per channel with the caches' statistics. None: on with several
    # --cache (no teacher dominates by scale), off with one (Proteus distils raw features).
    standardize: bool | None = None
    balance_teachers: bool = False  # weigh teachers so their losses pull equally (detached)
    mask_probability: float = 0.5  # share of each batch (the first samples) that is masked
    mask_ratio: float = 0.5  # share of patches masked in a masked sample
    device: str = "auto"  # cpu | cuda | auto
    seed: int = 0
    resume: bool = False  # continue from the run folder's latest checkpoint
    checkpoint_every: int = 500  # steps between checkpoints (one is always written at the end)
    # Cached: where the cache's images are now, if they moved. Online: the images.
    data: Path | str | None = None
    # A remote --cache is read through this node's shard cache (common/cache/mirror.py).
    shard_cache: Path | None = None  # None: $PROTEUS_SHARD_CACHE or ~/.cache/proteus/shards
    shard_cache_gb: float | None = None  # None: $PROTEUS_SHARD_CACHE_GB or 100
    tensorboard: bool = True  # also write TensorBoard scalars next to log.jsonl
    render_threads: int = 4  # DALI CPU threads
    progress: bool = (
        True  # on rank 0: a bar on a terminal, plain lines off one (common/runtime/progress.py)
    )
    subset_classes: int | None = None  # train on a seeded choice of this many classes
    subset_per_class: int | None = None  # at most this many images per class (seeded)
    subset_fraction: float | None = None  # a seeded share of the (remaining) images

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (paths as text, tuples as lists): config.json's "config", the
        checkpoint's, and what `proteus sweep` compares a rerun against."""
        return json.loads(json.dumps(asdict(self), default=str))

    # The options left to the recipe when not given (None): RecipeValues is the one list.
    RECIPE_FIELDS = tuple(f.name for f in fields(RecipeValues))

    def recipe_of(self) -> Recipe:
        return get_recipe(self.recipe)

    def resolved(self) -> TrainConfig:
        """Every option left at None filled from the recipe (``lr`` stays None: it scales
        with the global batch, known only at run time)."""
        recipe = self.recipe_of()
        filled = {f: getattr(recipe, f) for f in self.RECIPE_FIELDS if getattr(self, f) is None}
        return replace(self, **filled)

    def recipe_values(self) -> RecipeValues:
        """The recipe-backed options after resolution (given ones win), without None."""
        resolved = self.resolved()
        return RecipeValues(**{f: getattr(resolved, f) for f in self.RECIPE_FIELDS})

    @property
    def online(self) -> bool:
        return self.teacher is not None

    def check_source(self) -> None:
        """Exactly one source of targets: caches, or a teacher in the loop with its images."""
        if self.teacher is not None and self.cache:
            raise ProteusError(
                "--teacher trains online (the teacher runs every step) and --cache from stored "
                "targets: pass one of them"
            )
        if self.teacher is None and not self.cache:
            raise ProteusError(
                "no targets: pass --cache CACHE (from `proteus extract`), or --teacher NAME "
                "--data DIR to train with the teacher in the loop"
            )
        if self.teacher is not None and self.data is None:
            raise ProteusError(
                f"--teacher {self.teacher}: online training needs --data DIR, the images to render"
            )
        if self.teacher is not None and self.views is not None:
            raise ProteusError(
                "--views picks recorded views of a cache; online training draws "
                "a new view every time: drop --views"
            )
        if self.teacher is None and (self.weights is not None or self.image_size is not None):
            raise ProteusError(
                "--weights and --image-size go with --teacher (online "
                "training); a cache keeps its own"
            )

    @property
    def caches(self) -> tuple[Path | str, ...]:
        if not self.cache:
            return ()
        return tuple(self.cache) if isinstance(self.cache, tuple | list) else (self.cache,)

    def per_teacher(self, name: str, teacher: int) -> float | None:
        """``lambda_<name>`` for the ``teacher``-th cache."""
        value = getattr(self, f"lambda_{name}")
        if not isinstance(value, tuple | list):
            return value
        if len(value) == 1:
            return value[0]
        if len(value) != max(1, len(self.caches)):
            raise ProteusError(
                f"--lambda-{name} {','.join(map(str, value))}: {len(value)} values for "
                f"{len(self.caches)} --cache; give one value, or one per cache"
            )
        return value[teacher]
