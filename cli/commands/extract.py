"""``proteus extract``: run a teacher once over K recorded views of every image."""

from __future__ import annotations

from pathlib import Path

import click

from proteus.options import IntList, device_option, teacher_options


@click.command()
@teacher_options
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="Images: an ImageFolder tree (class sub-folders, labels kept), a flat folder, or a "
    "text file with one image path per line.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Cache folder to write (Zarr v3). Running the same command again resumes it.",
)
@click.option(
    "--views",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="K augmented views recorded per image. Size grows linearly: DINOv2-g at 224 px "
    "is ~0.79 MB per view in float16.",
)
@click.option(
    "--layers",
    type=IntList(),
    default="",
    help="Intermediate teacher blocks to store as layer_<i> targets, e.g. 19,39 or -1.",
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
@device_option
@click.option(
    "--dtype",
    type=click.Choice(["float16", "bfloat16", "float32"]),
    default="float16",
    show_default=True,
    help="Storage type of the targets.",
)
def extract(**kwargs) -> None:
    """Run a teacher once and write its targets for K views of every image to a cache."""
    from proteus.extract.config import ExtractConfig
    from proteus.extract.runner import run_extract

    weights = kwargs.pop("weights")
    cfg = ExtractConfig(weights=Path(weights) if weights else None, **kwargs)
    run_extract(cfg)
