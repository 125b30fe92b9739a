"""``proteus extract``: run a teacher once over K recorded views of every image."""

from __future__ import annotations

from pathlib import Path

import click

from proteus.common.views.records import AUG_FIELDS, parse_policy
from proteus.options import (
    IntList,
    Location,
    device_option,
    render_threads_option,
    teacher_options,
)


@click.command()
@teacher_options
@click.option(
    "--data",
    required=True,
    type=Location(),
    help="Images: an ImageFolder tree (class sub-folders, labels kept), a flat folder, a "
    "text file with one image path per line, or webdataset tar shards (a folder of .tar "
    "files, one .tar, or a brace pattern such as 'train-{000000..000146}.tar'; labels from "
    "each sample's .cls). Views replay straight from the tars. Shards may be on an object "
    "store (s3://, gs://, file:// URL of a folder, a .tar or a pattern): each is fetched "
    "whole into the shard cache ($PROTEUS_SHARD_CACHE) on first use.",
)
@click.option(
    "--out",
    required=True,
    type=Location(),
    help="Cache to write (Zarr v3): a folder, or an s3://, gs:// or file:// URL (each "
    "finished shard is uploaded whole from --staging; endpoint and credentials come from the "
    "usual AWS_*/GOOGLE_* variables). Running the same command again resumes it.",
)
@click.option(
    "--views",
    type=click.IntRange(min=1),
    default=None,
    help="K augmented views recorded per image; training uses every one before repeating "
    "any. Size grows linearly: DINOv2-g at 224 px is ~0.79 MB per view in float16 (--dtype "
    "int8 halves it). [default: one per planned --epochs, at most 8]",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="The epochs you plan to train (each uses every image once); sets the default --views.",
)
@click.option(
    "--layers",
    type=IntList(),
    default="",
    help="Intermediate teacher blocks to store as layer_<i> targets, e.g. 19,39 or -1.",
)
@click.option(
    "--registers/--no-registers",
    default=False,
    show_default=True,
    help="Also store the register tokens (DINOv3: 4, C-RADIO: 7 or 9) as a 'registers' "
    "target. No loss reads them; they are kept for your own analyses.",
)
@click.option(
    "--gpus-per-teacher",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Spread the teacher's blocks over this many GPUs per process, for a teacher that "
    "does not fit one (dinov3_7b in bfloat16 fits one 80 GB GPU; smaller GPUs need 2+). "
    "Under torchrun use --nproc_per_node = GPUs per node / this.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Views per teacher forward pass.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the view sampler; views are a pure function of (seed, image, view).",
)
@click.option(
    "--aug",
    "augs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Change one augmentation setting, e.g. --aug erase_prob=0 --aug crop_scale=0.25,1. "
    "Names: " + ", ".join(AUG_FIELDS) + ". A probability of 0 turns that augmentation off.",
)
@click.option(
    "--no-aug",
    is_flag=True,
    help="No augmentation at all: one centred square crop per view (use with --views 1).",
)
@device_option
@click.option(
    "--precision",
    type=click.Choice(["auto", "float32", "bfloat16"]),
    default="auto",
    show_default=True,
    help="Teacher compute; auto is bfloat16 autocast on cuda and float32 on cpu.",
)
@click.option(
    "--dtype",
    type=click.Choice(["float16", "float32", "int8"]),
    default="float16",
    show_default=True,
    help="Storage of the targets; int8 keeps one float16 scale per token (about half of "
    "float16's bytes; fidelity in docs/PERFORMANCE.md).",
)
@click.option(
    "--pca",
    type=click.IntRange(min=1),
    default=None,
    help="Store K principal components of every token target (patch, layers) instead of "
    "all D values; the basis is fitted on a sample of views and kept in the cache.",
)
@click.option(
    "--pca-sample",
    type=click.IntRange(min=1),
    default=2048,
    show_default=True,
    help="Views whose teacher tokens the PCA basis is fitted on.",
)
@click.option(
    "--shard-views",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Views per shard file: the unit of writing, resuming and splitting work across processes.",
)
@click.option(
    "--views-from",
    type=Location(),
    default=None,
    help="A sealed cache whose images and view records to reuse exactly (its views, seed, "
    "augmentation and image size), so this teacher's targets describe the same pixels and "
    "`proteus train --cache OTHER --cache OUT` can distil both. --data must be the same images.",
)
@click.option(
    "--staging",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With a URL --out: the local folder each process writes a shard in before uploading "
    "it (the shard's files are deleted after their upload). [default: $PROTEUS_STAGING or "
    "~/.cache/proteus/staging]",
)
@render_threads_option
@click.pass_context
def extract(
    ctx: click.Context, augs: tuple[str, ...], no_aug: bool, weights: str | None, **kwargs
) -> None:
    """Run a teacher once and write its targets for K views of every image to a cache.

    Re-running the same command resumes an interrupted extraction. Under
    `torchrun --nproc_per_node N` the processes split the shards between them.
    """
    from proteus.extract.config import ExtractConfig
    from proteus.extract.runner import run_extract

    if kwargs["views_from"] is not None:
        options = {"views": "--views", "seed": "--seed", "augs": "--aug", "no_aug": "--no-aug"}
        default = click.core.ParameterSource.DEFAULT
        given = [
            flag for name, flag in options.items() if ctx.get_parameter_source(name) != default
        ]
        if given:
            raise click.UsageError(
                f"--views-from takes the views, seed and augmentation of that cache; drop "
                f"{', '.join(given)}"
            )
    policy = parse_policy(augs, no_aug)
    cfg = ExtractConfig(weights=Path(weights) if weights else None, policy=policy, **kwargs)
    run_extract(cfg)
