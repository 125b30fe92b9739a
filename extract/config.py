"""The resolved options of one extraction; written into the cache manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from proteus.common.runtime.options import option
from proteus.common.views.records import DEFAULT_PRESET, PRESETS, AugPolicy
from proteus.common.views.replays import MAX_REPLAYS


@dataclass(frozen=True)
class ExtractConfig:
    """Every option of ``proteus extract``: each field's default and help text are the
    command line's (cli/options.py builds the options from them)."""

    teacher: str = option(
        help="Registry name (see `proteus teachers`) or timm:<model> for any timm model."
    )
    # Local, or a URL on an object store.
    data: Path | str = option(
        help="Images: an ImageFolder tree (class sub-folders, labels kept), a flat folder, a "
        "text file with one image path per line, or webdataset tar shards (a folder of .tar "
        "files, one .tar, or a brace pattern such as 'train-{000000..000146}.tar'; labels "
        "from each sample's .cls). Views replay straight from the tars. Shards may be on an "
        "object store (s3://, gs://, file:// URL of a folder, a .tar or a pattern): each is "
        "fetched whole into the shard cache ($PROTEUS_SHARD_CACHE) on first use.",
        kind="location",
    )
    out: Path | str = option(
        help="Cache to write (Zarr v3): a folder, or an s3://, gs:// or file:// URL (each "
        "finished shard is uploaded whole from --staging; endpoint and credentials come from "
        "the usual AWS_*/GOOGLE_* variables). Running the same command again resumes it.",
        kind="location",
    )
    weights: Path | None = option(
        None,
        help="Local weights file (safetensors, or a torch state dict loaded with "
        "weights_only=True) instead of the model hub. Needed for synclr_*.",
        kind="file",
    )
    image_size: int | None = option(
        None,
        help="Square input size in pixels, a multiple of the patch size. [default: the "
        "teacher's, 224 for the shipped ViTs]",
        min=1,
    )
    # K recorded views per image: storage and teacher time grow linearly. None: as many as the
    # planned schedule needs (extract/plan.py).
    views: int | None = option(
        None,
        help="K augmented views recorded per image; training uses every one before repeating "
        "any. Size grows linearly: DINOv2-g at 224 px is ~0.79 MB per view in float16 "
        "(--dtype int8 halves it). On a sealed cache at --out, a larger K with every other "
        "option the same grows it: the views it has stay byte for byte, K' − K are added. "
        f"[default: enough that --epochs replays no view more than {MAX_REPLAYS} times "
        "(docs/QUALITY.md 'Long schedules'), within --budget-mb]",
        min=1,
    )
    holdout_views: int = option(
        0,
        help="Also record this many held-out views of every image, with targets, that "
        "training never samples: `proteus train` scores the student on them every "
        "--eval-every steps (loss on views it trained on vs views it never saw), which shows "
        "overfitting to the recorded views as it happens. Storage grows as K + N views.",
        min=0,
    )
    holdout_images: int = option(
        0,
        help="Hold this many images (a seeded choice) out of training altogether: their views "
        "are recorded with targets, and `proteus train` scores the student on them too.",
        min=0,
    )
    epochs: int = option(
        300,
        help="The epochs you plan to train (each draws every image once on average, with or "
        "without repeated augmentation); sets the default --views.",
        min=1,
    )
    budget_mb: float = option(
        8.0,
        help="Without --views: the most target megabytes per image the planned views may take "
        "(DINOv2-g at 224 px: 0.79 MB a view in float16). When K views pass it in float16, "
        "the plan stores int8, then PCA 256/128/64 (unless --dtype or --pca is given), then "
        "fewer views, and says which.",
        min=0.001,
    )
    layers: tuple[int, ...] = option(
        (),
        help="Intermediate teacher blocks to store as layer_<i> targets, e.g. 19,39 or -1.",
        kind="int_list",
        show_default=False,
    )
    registers: bool = option(
        False,
        help="Also store the register tokens (DINOv3: 4, C-RADIO: 7 or 9) as a 'registers' "
        "target. No loss reads them; they are kept for your own analyses.",
        negatable=True,
    )
    # Each process under torchrun uses GPUs local_rank × G … + G − 1
    # (common/models/teachers/placement.py).
    gpus_per_teacher: int = option(
        1,
        help="Spread the teacher's blocks over this many GPUs per process, for a teacher that "
        "does not fit one (dinov3_7b in bfloat16 fits one 80 GB GPU; smaller GPUs need 2+). "
        "Under torchrun use --nproc_per_node = GPUs per node / this.",
        min=1,
    )
    batch_size: int = option(64, help="Views per teacher forward pass.", min=1)
    seed: int = option(
        0, help="Seed of the view sampler; views are a pure function of (seed, image, view)."
    )
    aug_preset: str = option(
        DEFAULT_PRESET,
        help="The named view policy: reference = the reference's views (timm create_transform: "
        "RandomResizedCrop 0.08–1, flip, RandAugment m9, erasing 0.25), made for ImageNet "
        "photos; small = crops of 35% or more, no RandAugment, no erasing, for images a few "
        "dozen pixels wide; glyphs = small without flips, for digits and characters. "
        "--aug changes single values of it. Recorded in the manifest.",
        choices=tuple(PRESETS),
    )
    # How views are drawn, when not the preset's: the command line builds it from --aug and
    # --no-aug (and --views-from from the source cache). None: the preset's.
    policy: AugPolicy | None = None
    pretrained: bool = True  # False: random-init teacher (tests, benchmarks); never downloads
    device: str = option(
        "auto",
        help="Where the model runs; auto picks cuda when a GPU is visible.",
        choices=("auto", "cpu", "cuda"),
    )
    precision: str = option(
        "auto",
        help="Teacher compute; auto is bfloat16 autocast on cuda and float32 on cpu.",
        choices=("auto", "float32", "bfloat16"),
    )
    # None: float16, or what the plan picks without --views (extract/plan.py), or an existing
    # cache's own.
    dtype: str | None = option(
        None,
        help="Storage of the targets; int8 keeps one float16 scale per token (about half of "
        "float16's bytes; fidelity in docs/PERFORMANCE.md). [default: float16, or the codec "
        "the --budget-mb plan needs without --views, or the existing cache's]",
        choices=("float16", "float32", "int8"),
    )
    pca: int | None = option(
        None,
        help="Store K principal components of every token target (patch, layers) instead of "
        "all D values; the basis is fitted on a sample of views and kept in the cache.",
        min=1,
    )
    pca_sample: int = option(
        2048, help="Views whose teacher tokens the PCA basis is fitted on.", min=1
    )
    # 256 views of DINOv2-g patch targets is ~200 MB: big files for object stores and
    # parallel file systems, small enough to hold one in memory while the next is built.
    shard_views: int = option(
        256,
        help="Views per shard file: the unit of writing, resuming and splitting work across "
        "processes.",
        min=1,
    )
    # Its policy, seed, K and image size replace the ones above.
    views_from: Path | str | None = option(
        None,
        help="A sealed cache whose images and view records to reuse exactly (its views, seed, "
        "augmentation and image size), so this teacher's targets describe the same pixels "
        "and `proteus train --cache OTHER --cache OUT` can distil both. --data must be the "
        "same images.",
        kind="location",
    )
    staging: Path | None = option(
        None,
        help="With a URL --out: the local folder each process writes a shard in before "
        "uploading it (the shard's files are deleted after their upload). [default: "
        "$PROTEUS_STAGING or ~/.cache/proteus/staging]",
        kind="dir",
    )
    render_threads: int = option(
        4, help="DALI CPU threads for decoding and augmenting.", flag="--threads", min=1
    )
    # On rank 0: bars on a terminal, plain lines off one (common/runtime/progress.py).
    progress: bool = True

    @property
    def view_policy(self) -> AugPolicy:
        return self.policy if self.policy is not None else PRESETS[self.aug_preset]

    # views and dtype may be None as given; extract/plan.py sets both before anything is laid
    # out, and what is written reads them through these.
    @property
    def planned_views(self) -> int:
        if self.views is None:
            raise ValueError("--views is planned (extract/plan.py) before the cache is laid out")
        return self.views

    @property
    def planned_dtype(self) -> str:
        if self.dtype is None:
            raise ValueError("--dtype is planned (extract/plan.py) before the cache is laid out")
        return self.dtype
