"""``proteus export``: a distilled backbone as timm-loadable safetensors."""

from __future__ import annotations

from pathlib import Path

import click

from proteus.options import checkpoint_option


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
    default=None,
    help="Export the EMA student, or the raw one. [default: what the run's recipe "
    "evaluates: raw for proteus, EMA for legacy]",
)
def export(checkpoint: Path, out: Path, ema: bool | None) -> None:
    """Write the student backbone as timm-loadable safetensors plus its config.

    Load it anywhere with timm.create_model("local-dir:OUT", pretrained=True).
    """
    from proteus.evaluate.export import run_export

    run_export(checkpoint, out, ema)
    click.echo(f"exported to {out}: timm.create_model('local-dir:{out}', pretrained=True)")
