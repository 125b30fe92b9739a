"""``proteus train``: distil a student from a cache, replaying the recorded views."""

from __future__ import annotations

from pathlib import Path

import click

from proteus.options import (
    HintPair,
    Location,
    PerTeacherFloat,
    device_option,
    render_threads_option,
)

_LAMBDA_HELP = (
    "Weight of the {} loss: one value, or one per --cache (e.g. 1,0.5). "
    "[default: 1; for CLIP teachers token 1, others 0]"
)


@click.command()
@click.option(
    "--cache",
    multiple=True,
    type=Location(),
    help="A sealed cache written by `proteus extract`: a folder, or an s3://, gs:// or "
    "file:// URL (read through this node's --shard-cache). Repeat it to distil several "
    "teachers at once (one head set each); their views must be aligned (`extract "
    "--views-from`).",
)
@click.option(
    "--shard-cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With a remote --cache (or tar shards on an object store): the node-local folder "
    "their shards are fetched into, checked and kept, shared by every process of the node. "
    "[default: $PROTEUS_SHARD_CACHE or ~/.cache/proteus/shards]",
)
@click.option(
    "--shard-cache-gb",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Most gigabytes of shards the --shard-cache keeps; the least recently used go "
    "first. [default: $PROTEUS_SHARD_CACHE_GB or 100]",
)
@click.option(
    "--teacher",
    default=None,
    help="Train online instead of from a cache: this teacher (registry name or "
    "timm:<model>) runs on a fresh view of every sample; needs --data.",
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --teacher: a local weights file instead of the model hub.",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=1),
    default=None,
    help="With --teacher: input size, a multiple of its patch. [default: the teacher's]",
)
@click.option(
    "--student",
    required=True,
    help="A ViT (vit_ti14, vit_s14, vit_b14, vit_l14, their *16 variants), a convnet "
    "(resnet18, resnet50, convnext_t, convnext_s, efficientnet_b0, mobilenetv4_s, fastvit_t8, "
    "efficientvit_b1), or timm:<any timm backbone>. `proteus students` lists them. A convnet's "
    "dense features are resampled to the teacher's patch grid; its masked cells are painted "
    "with a learned mask colour.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Run folder: checkpoints, per-step JSONL log, TensorBoard, resolved config.",
)
@click.option(
    "--recipe",
    default="proteus",
    show_default=True,
    help="Defaults for every option marked [recipe]: proteus = the reference recipe "
    "(Proteus-pytorch pretrain/), legacy = proteus 0.1's. Options you give win.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Passes over the images (as many samples as images; recorded views are used in "
    "turn, every one before any repeats).",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many optimizer steps (overrides --epochs).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Images per process and step; the global batch is this × processes.",
)
@click.option(
    "--lr",
    type=float,
    default=None,
    help="Peak learning rate. [recipe: 5e-4 × global batch / 512 from a global batch of 512 "
    "up; proteus: 5e-4 × √(batch / 512) below, legacy: linear below too]",
)
@click.option(
    "--weight-decay",
    type=float,
    default=None,
    help="AdamW decay (proteus: on every matrix, position embedding and token too). [recipe: 0.05]",
)
@click.option(
    "--warmup-epochs",
    type=float,
    default=None,
    help="Linear warm-up before the cosine schedule. [recipe: 5]",
)
@click.option(
    "--warmup-lr",
    type=float,
    default=None,
    help="Learning rate the warm-up starts from. [recipe: proteus 1e-6, legacy 0]",
)
@click.option(
    "--drop-path",
    type=float,
    default=None,
    help="Stochastic depth rate of the student. [recipe: proteus 0, legacy 0.1]",
)
@click.option(
    "--ema-decay",
    type=float,
    default=None,
    help="Decay of the EMA student (0 turns EMA off). [recipe: proteus 0.99996, legacy "
    "0.9999 with warm-up]",
)
@click.option(
    "--views",
    type=click.IntRange(min=1),
    default=None,
    help="Use only the first N recorded views of each image (a K-view cache holds the "
    "views of every smaller K). [default: all of them]",
)
@click.option(
    "--repeated-aug",
    type=click.IntRange(min=1),
    default=None,
    help="Take each image this many times per epoch, each time as another view (DeiT's "
    "RASampler; 1 turns it off). [recipe: proteus 3, legacy 1]",
)
@click.option("--grad-clip", type=float, default=None, help="Clip gradients to this norm.")
@click.option("--lambda-token", type=PerTeacherFloat(), help=_LAMBDA_HELP.format("token"))
@click.option("--lambda-fea", type=PerTeacherFloat(), help=_LAMBDA_HELP.format("feature"))
@click.option("--lambda-patch", type=PerTeacherFloat(), help=_LAMBDA_HELP.format("patch"))
@click.option(
    "--hint",
    "hints",
    type=HintPair(),
    multiple=True,
    help="Intermediate-layer hint: student block S (a convnet's stage S; 0-based, negative "
    "from the end) learns "
    "the cache's layer_T target through its own LayerNorm+Linear head (MSE); @C picks the "
    "C-th --cache. Repeatable, e.g. --hint 5:19 --hint 11:39.",
)
@click.option(
    "--lambda-hint",
    type=PerTeacherFloat(),
    help="Weight of each hint's MSE: one value, or one per --cache. [default: 1]",
)
@click.option(
    "--loss",
    type=click.Choice(["mse", "cosine-smooth-l1"]),
    default="mse",
    show_default=True,
    help="How predictions meet targets: mse (Proteus), or cosine-smooth-l1 (RADIO: 1 − cosine "
    "on the summary token, 0.9·(1 − cosine) + 0.1·smooth-L1 on spatial tokens). Recorded in "
    "config.json.",
)
@click.option(
    "--standardize/--no-standardize",
    default=None,
    help="Distil per-channel standardised targets, (t − mean) / std with the statistics each "
    "cache recorded at extraction, so no teacher dominates by the scale of its features; "
    "eval agreement and export map predictions back to teacher units. [default: on with "
    "several --cache, off with one]",
)
@click.option(
    "--balance-teachers/--no-balance-teachers",
    default=False,
    show_default=True,
    help="With several --cache: weigh each teacher's loss by (mean of the teachers' losses) / "
    "(its own), without gradient, so each pulls with the same magnitude; --lambda-* still "
    "weigh the parts inside each teacher's loss.",
)
@click.option(
    "--mask-probability",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Share of each batch (its first samples) that gets a patch mask.",
)
@click.option(
    "--mask-ratio",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Share of patches masked in a masked sample.",
)
@device_option
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of initialisation, view choice, and masks.",
)
@click.option("--resume", is_flag=True, help="Continue from the run folder's latest checkpoint.")
@click.option(
    "--min-lr",
    type=float,
    default=None,
    help="Floor of the cosine schedule. [recipe: proteus 1e-5, legacy 1e-6]",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Steps between checkpoints; one is always written at the end and on SIGTERM.",
)
@click.option(
    "--data",
    type=Location(),
    default=None,
    help="With --teacher: the images (ImageFolder tree, folder, list file or tar shards, "
    "local or on an object store). With --cache: where its images live now, if they moved "
    "(a folder, or the URL of the tar shards' folder). [default: the root recorded in the "
    "cache]",
)
@click.option(
    "--tensorboard/--no-tensorboard",
    default=True,
    show_default=True,
    help="Also write TensorBoard scalars to RUN/tensorboard.",
)
@render_threads_option
@click.option(
    "--subset-classes",
    type=click.IntRange(min=1),
    default=None,
    help="Train on a seeded choice of this many classes of the cache (no re-extraction).",
)
@click.option(
    "--subset-per-class",
    type=click.IntRange(min=1),
    default=None,
    help="Keep at most this many images of each class (seeded).",
)
@click.option(
    "--subset-fraction",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Keep a seeded share of the images (after the class filters).",
)
def train(**kwargs) -> None:
    """Train a student with the Proteus token, feature and patch losses (and optional
    intermediate-layer hints), from a cache or with the teacher online.

    From --cache the teacher is never loaded: each step renders the recorded views again and
    reads their cached targets. With --teacher NAME --data DIR the teacher runs on a fresh
    view of every sample, as the reference trains (the control for what a cache costs).
    Under `torchrun --nproc_per_node N` it runs DDP (gloo on CPU, nccl on GPU).
    """
    from proteus.train.runner import run_train

    result = run_train(train_config(kwargs))
    if result.last:
        parts = ", ".join(f"{k} {result.last[k]:.4g}" for k in result.last if k.startswith("loss"))
        click.echo(f"trained {result.steps} steps into {result.run}: {parts}")


def train_config(params: dict):
    """The TrainConfig of parsed `proteus train` options (also used by `proteus sweep`)."""
    from proteus.train.config import TrainConfig

    caches = tuple(params.get("cache") or ())
    cache = caches[0] if len(caches) == 1 else (caches or None)
    cfg = TrainConfig(**(params | {"cache": cache}))
    cfg.check_source()
    cfg.recipe_of()  # an unknown name: one line that lists the known ones
    return cfg
