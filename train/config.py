"""The resolved options of one training run; written to the run folder as config.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from proteus.common.models.parts import LOSS_KINDS, Hint
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.options import option
from proteus.common.views.records import DEFAULT_PRESET, PRESETS, AugPolicy
from proteus.train.recipe import Recipe, get_recipe
from proteus.train.target_space import SPACES

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


_LAMBDA_HELP = (
    "Weight of the {} loss: one value, or one per --cache (e.g. 1,0.5). "
    "[default: 1; for CLIP teachers token 1, others 0]"
)


@dataclass(frozen=True)
class TrainConfig:
    """Every option of ``proteus train``: each field's default and help text are the
    command line's (cli/options.py builds the options from them)."""

    # A sealed cache written by `proteus extract`, or several aligned ones (one per teacher,
    # same views: `extract --views-from`); the first one's images and mean/std are rendered.
    # None: online training with `teacher` in the loop on `data`.
    cache: Path | str | tuple[Path | str, ...] | None = option(
        help="A sealed cache written by `proteus extract`: a folder, or an s3://, gs:// or "
        "file:// URL (read through this node's --shard-cache). Repeat it to distil several "
        "teachers at once (one head set each); their views must be aligned (`extract "
        "--views-from`).",
        kind="location",
        multiple=True,
        required=False,
    )
    student: str = option(
        help="A ViT (vit_ti14, vit_s14, vit_b14, vit_l14, their *16 variants), a convnet "
        "(resnet18, resnet50, convnext_t, convnext_s, efficientnet_b0, mobilenetv4_s, "
        "fastvit_t8, efficientvit_b1), or timm:<any timm backbone>. `proteus students` lists "
        "them. A convnet's dense features are resampled to the teacher's patch grid; its "
        "masked cells are painted with a learned mask colour. Repeat it to train several "
        "students from one stream (each step rendered and read once), each into --out/NAME.",
        multiple=True,
    )
    out: Path = option(
        help="Run folder: checkpoints, per-step JSONL log, TensorBoard, resolved config. With "
        "several --student, the folder that holds one run folder per student.",
    )
    # A remote --cache is read through this node's shard cache (common/cache/mirror.py).
    shard_cache: Path | None = option(
        None,
        help="With a remote --cache (or tar shards on an object store): the node-local folder "
        "their shards are fetched into, checked and kept, shared by every process of the "
        "node. [default: $PROTEUS_SHARD_CACHE or ~/.cache/proteus/shards]",
        kind="dir",
    )
    shard_cache_gb: float | None = option(
        None,
        help="Most gigabytes of shards the --shard-cache keeps; the least recently used go "
        "first. [default: $PROTEUS_SHARD_CACHE_GB or 100]",
        min=0,
        min_open=True,
    )
    teacher: str | None = option(
        None,
        help="Train online instead of from a cache: this teacher (registry name or "
        "timm:<model>) runs on a fresh view of every sample; needs --data. With --cache and "
        "--online-fraction: the cache's teacher, scoring that share of fresh views.",
    )
    weights: Path | None = option(
        None, help="With --teacher: a local weights file instead of the model hub.", kind="file"
    )
    image_size: int | None = option(
        None,
        help="With --teacher: input size, a multiple of its patch. [default: the teacher's]",
        min=1,
    )
    online_fraction: float | None = option(
        None,
        help="With --cache and --teacher (the cache's, with its --weights): this share of "
        "every batch is scored by the teacher on views the cache never recorded (the next "
        "view records of those images); the rest is read from the cache. 0 is cached "
        "training (the teacher is not loaded), 1 scores every sample. [default: off]",
        min=0,
        max=1,
        metavar="P",
    )
    aug_preset: str = option(
        DEFAULT_PRESET,
        help="With --teacher: the named policy fresh views are drawn from (reference, small, "
        "glyphs: as `proteus extract --aug-preset`), so any cache's views can be reproduced "
        "online; --aug/--no-aug change single values. A cache replays the views it recorded.",
        choices=tuple(PRESETS),
    )
    # Online: how each use's fresh view is drawn, when not the preset's (the command line
    # builds it from --aug/--no-aug). A cache keeps the policy it was extracted with.
    policy: AugPolicy | None = None
    recipe: str = option(
        "proteus",
        help="Defaults for every option marked [recipe]: proteus = the reference recipe "
        "(Proteus-pytorch pretrain/), legacy = proteus 0.1's. Options you give win.",
    )
    epochs: int = option(
        300,
        help="Passes over the images (as many samples as images; recorded views are used in "
        "turn, every one before any repeats).",
        min=1,
    )
    max_steps: int | None = option(
        None, help="Stop after this many optimizer steps (overrides --epochs).", min=1
    )
    batch_size: int = option(
        128, help="Images per process and step; the global batch is this × processes.", min=1
    )
    lr: float | None = option(
        None,
        help="Peak learning rate. [recipe: 5e-4 × global batch / 512 from a global batch of "
        "512 up; proteus: 5e-4 × √(batch / 512) below, legacy: linear below too]",
    )
    weight_decay: float | None = option(
        None,
        help="AdamW decay (proteus: on every matrix, position embedding and token too). "
        "[recipe: 0.05]",
    )
    warmup_epochs: float | None = option(
        None, help="Linear warm-up before the cosine schedule. [recipe: 5]"
    )
    warmup_lr: float | None = option(
        None, help="Learning rate the warm-up starts from. [recipe: proteus 1e-6, legacy 0]"
    )
    drop_path: float | None = option(
        None, help="Stochastic depth rate of the student. [recipe: proteus 0, legacy 0.1]"
    )
    ema_decay: float | None = option(
        None,
        help="Decay of the EMA student (0 turns EMA off). [recipe: proteus 0.99996, legacy "
        "0.9999 with warm-up]",
    )
    # A K-view cache holds the views of every smaller K (records are a pure function of
    # seed, image and view index).
    views: int | None = option(
        None,
        help="Use only the first N recorded views of each image (a K-view cache holds the "
        "views of every smaller K). [default: all of them]",
        min=1,
    )
    repeated_aug: int | None = option(
        None,
        help="Take each image this many times per epoch, each time as another view (DeiT's "
        "RASampler; 1 turns it off). [recipe: proteus 3, legacy 1]",
        min=1,
    )
    grad_clip: float | None = option(None, help="Clip gradients to this norm.")
    lambda_token: PerTeacher = option(None, help=_LAMBDA_HELP.format("token"), kind="per_teacher")
    lambda_fea: PerTeacher = option(None, help=_LAMBDA_HELP.format("feature"), kind="per_teacher")
    lambda_patch: PerTeacher = option(None, help=_LAMBDA_HELP.format("patch"), kind="per_teacher")
    hints: tuple[Hint, ...] = option(
        (),
        help="Intermediate-layer hint: student block S (a convnet's stage S; 0-based, negative "
        "from the end) learns the cache's layer_T target through its own LayerNorm+Linear "
        "head (MSE); @C picks the C-th --cache. Repeatable, e.g. --hint 5:19 --hint 11:39.",
        flag="--hint",
        kind="hint",
        multiple=True,
    )
    lambda_hint: PerTeacher = option(
        None,
        help="Weight of each hint's MSE: one value, or one per --cache. [default: 1]",
        kind="per_teacher",
    )
    loss: str = option(
        "mse",
        help="How predictions meet targets: mse (Proteus), or cosine-smooth-l1 (RADIO: 1 − "
        "cosine on the summary token, 0.9·(1 − cosine) + 0.1·smooth-L1 on spatial tokens). "
        "Recorded in config.json.",
        choices=LOSS_KINDS,
    )
    target_space: str = option(
        "auto",
        help="Where PCA-coded targets (extract --pca K) are learnt: coefficients = the heads "
        "predict the K coefficients and the MSE is computed on them, exactly the decoded "
        "loss without decoding to teacher width (mse, raw targets only); teacher = decode "
        "first; auto = coefficients where they apply (config.json's target_space says).",
        choices=SPACES,
    )
    # None: on with several --cache (no teacher dominates by scale), off with one (Proteus
    # distils raw features).
    standardize: bool | None = option(
        None,
        help="Distil per-channel standardised targets, (t − mean) / std with the statistics "
        "each cache recorded at extraction, so no teacher dominates by the scale of its "
        "features; eval agreement and export map predictions back to teacher units. "
        "[default: on with several --cache, off with one]",
        negatable=True,
    )
    compile: bool = option(
        False,
        help="torch.compile the student's step (its two passes and the losses). The first "
        "steps pay the compile time; docs/PERFORMANCE.md (B13) measures its cost and gain. "
        "Where torch cannot compile (no C++ compiler, an unsupported model) it says so in one "
        "line and trains uncompiled.",
        negatable=True,
    )
    balance_teachers: bool = option(
        False,
        help="With several --cache: weigh each teacher's loss by (mean of the teachers' "
        "losses) / (its own), without gradient, so each pulls with the same magnitude; "
        "--lambda-* still weigh the parts inside each teacher's loss.",
        negatable=True,
    )
    mask_probability: float = option(
        0.5, help="Share of each batch (its first samples) that gets a patch mask.", min=0, max=1
    )
    mask_ratio: float = option(
        0.5, help="Share of patches masked in a masked sample.", min=0, max=1
    )
    device: str = option(
        "auto",
        help="Where the model runs; auto picks cuda when a GPU is visible.",
        choices=("auto", "cpu", "cuda"),
    )
    seed: int = option(0, help="Seed of initialisation, view choice, and masks.")
    resume: bool = option(False, help="Continue from the run folder's latest checkpoint.")
    allow_grown_cache: bool = option(
        False,
        help="With --resume: continue although the --cache grew since the run started "
        "(extract --views K' on it); the remaining steps sample all K' views. Without it such "
        "a resume is refused.",
    )
    min_lr: float | None = option(
        None, help="Floor of the cosine schedule. [recipe: proteus 1e-5, legacy 1e-6]"
    )
    eval_every: int | None = option(
        None,
        help="Score the student every this many steps on a fixed sample of views it trains "
        "on and of views it never saw (a cache's --holdout-views and --holdout-images; "
        "online, views training never draws): the loss parts and the token and patch cosines "
        "of each go to log.jsonl and TensorBoard as gauge/<set>/<metric>, `proteus compare` "
        "and `proteus viz`. 0 turns it off. [default: a few times an epoch, at most ~3% of "
        "the run's compute]",
        min=0,
    )
    checkpoint_every: int = option(
        500,
        help="Steps between checkpoints; one is always written at the end and on SIGTERM.",
        min=1,
    )
    # Cached: where the cache's images are now, if they moved. Online: the images.
    data: Path | str | None = option(
        None,
        help="With --teacher: the images (ImageFolder tree, folder, list file or tar shards, "
        "local or on an object store). With --cache: where its images live now, if they "
        "moved (a folder, or the URL of the tar shards' folder). [default: the root recorded "
        "in the cache]",
        kind="location",
    )
    tensorboard: bool = option(
        True, help="Also write TensorBoard scalars to RUN/tensorboard.", negatable=True
    )
    render_threads: int = option(
        4, help="DALI CPU threads for decoding and augmenting.", flag="--threads", min=1
    )
    # On rank 0: a bar on a terminal, plain lines off one (common/runtime/progress.py).
    progress: bool = True
    subset_classes: int | None = option(
        None,
        help="Train on a seeded choice of this many classes of the cache (no re-extraction).",
        min=1,
    )
    subset_per_class: int | None = option(
        None, help="Keep at most this many images of each class (seeded).", min=1
    )
    subset_fraction: float | None = option(
        None,
        help="Keep a seeded share of the images (after the class filters).",
        min=0,
        max=1,
        min_open=True,
    )

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
    def view_policy(self) -> AugPolicy:
        return self.policy if self.policy is not None else PRESETS[self.aug_preset]

    @property
    def online(self) -> bool:
        """A teacher in the loop and no cache."""
        return self.teacher is not None and not self.cache

    @property
    def hybrid(self) -> bool:
        """A cache with a share of fresh views scored by its teacher (--online-fraction)."""
        return bool(self.cache) and self.teacher is not None and bool(self.online_fraction)

    def check_source(self) -> None:
        """Exactly one source of targets: caches, a teacher in the loop with its images, or
        a cache with its teacher scoring a share of fresh views (--online-fraction)."""
        if self.online_fraction is not None:
            self._check_hybrid()
        elif self.teacher is not None and self.cache:
            raise ProteusError(
                "--teacher trains online (the teacher runs every step) and --cache from stored "
                "targets: pass one of them, or both with --online-fraction P for a share of "
                "fresh views"
            )
        if self.teacher is None and not self.cache:
            raise ProteusError(
                "no targets: pass --cache CACHE (from `proteus extract`), or --teacher NAME "
                "--data DIR to train with the teacher in the loop"
            )
        if self.online and self.data is None:
            raise ProteusError(
                f"--teacher {self.teacher}: online training needs --data DIR, the images to render"
            )
        if self.online and self.views is not None:
            raise ProteusError(
                "--views picks recorded views of a cache; online training draws "
                "a new view every time: drop --views"
            )
        if not self.online and (self.policy is not None or self.aug_preset != DEFAULT_PRESET):
            raise ProteusError(
                "--aug, --no-aug and --aug-preset shape the fresh views of --teacher; a cache "
                "replays the views it recorded (`proteus cache info` shows its policy)"
            )
        if self.cache and self.image_size is not None:
            raise ProteusError(
                "--image-size goes with --teacher (online training); a cache keeps its own"
            )
        if self.teacher is None and self.weights is not None:
            raise ProteusError(
                "--weights goes with --teacher (online training, or --online-fraction); a "
                "cache keeps its own"
            )

    def _check_hybrid(self) -> None:
        p = self.online_fraction
        if self.teacher is None:
            raise ProteusError(
                f"--online-fraction {p}: fresh views need the teacher that scores them; add "
                "--teacher NAME (the cache's, and --weights if it was extracted with them)"
            )
        if not self.cache:
            raise ProteusError(
                f"--online-fraction {p} mixes a cache's views with fresh ones: pass --cache "
                "(online training without a cache scores every sample already)"
            )
        if len(self.caches) > 1:
            raise ProteusError(
                f"--online-fraction {p}: fresh views are scored by one teacher, so it takes one "
                f"--cache (given {len(self.caches)})"
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
