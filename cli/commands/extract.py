"""``proteus extract``: run a teacher once over K recorded views of every image."""

from __future__ import annotations

import click

from proteus.extract.config import ExtractConfig
from proteus.options import config_options, view_options, view_policy


@click.command()
@config_options(ExtractConfig)
@view_options
@click.pass_context
def extract(ctx: click.Context, augs: tuple[str, ...], no_aug: bool, **kwargs) -> None:
    """Run a teacher once and write its targets for K views of every image to a cache.

    Re-running the same command resumes an interrupted extraction. Under
    `torchrun --nproc_per_node N` the processes split the shards between them.
    """
    from proteus.extract.runner import run_extract

    if kwargs["views_from"] is not None:
        options = {
            "views": "--views",
            "seed": "--seed",
            "augs": "--aug",
            "no_aug": "--no-aug",
            "aug_preset": "--aug-preset",
        }
        default = click.core.ParameterSource.DEFAULT
        given = [
            flag for name, flag in options.items() if ctx.get_parameter_source(name) != default
        ]
        if given:
            raise click.UsageError(
                f"--views-from takes the views, seed and augmentation of that cache; drop "
                f"{', '.join(given)}"
            )
    policy = view_policy(augs, no_aug, kwargs["aug_preset"])
    cfg = ExtractConfig(policy=policy, **kwargs)
    run_extract(cfg)
