"""``proteus extract``: run a teacher once over K recorded views of every image."""

from __future__ import annotations

import click

from proteus.common.views.records import AUG_FIELDS, parse_policy
from proteus.extract.config import ExtractConfig
from proteus.options import config_options


@click.command()
@config_options(ExtractConfig)
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
@click.pass_context
def extract(ctx: click.Context, augs: tuple[str, ...], no_aug: bool, **kwargs) -> None:
    """Run a teacher once and write its targets for K views of every image to a cache.

    Re-running the same command resumes an interrupted extraction. Under
    `torchrun --nproc_per_node N` the processes split the shards between them.
    """
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
    cfg = ExtractConfig(policy=policy, **kwargs)
    run_extract(cfg)
