"""``proteus export``: a distilled backbone as timm-loadable safetensors."""

from __future__ import annotations

from pathlib import Path

import click

from proteus.options import checkpoint_option
from proteus.pending import not_built_yet


@click.command()
@checkpoint_option(required=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for model.safetensors and config.json.",
)
@click.option(
    "--ema/--no-ema",
    default=True,
    show_default=True,
    help="Export the EMA student rather than the raw one.",
)
def export(**kwargs) -> None:
    """Write the student backbone as timm-loadable safetensors plus its config."""
    not_built_yet("export", "evaluate/export/demo")
