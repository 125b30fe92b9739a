"""``proteus viz``: PCA pictures of patch features, and loss curves, as PNG files."""

from __future__ import annotations

from pathlib import Path

import click

from proteus.options import Location, checkpoint_option


@click.command()
@checkpoint_option(required=True)
@click.option(
    "--cache",
    type=Location(),
    default=None,
    help="Cache whose views and teacher features to show. [default: the run's own cache]",
)
@click.option(
    "--views",
    type=click.IntRange(min=1, max=16),
    default=4,
    show_default=True,
    help="Rows in the PCA picture (one view per image).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for pca.png (image | teacher | student), losses.png, and gauge.png (the "
    "loss on trained vs held-out views, when the run was gauged).",
)
def viz(checkpoint: Path, cache: Path | None, views: int, out: Path) -> None:
    """Picture patch features (first 3 PCA components as RGB) and plot the loss curves."""
    from proteus.common.runs.checkpoint import resolve_checkpoint
    from proteus.evaluate.viz import plot_gauge, plot_losses, plot_pca

    pca = plot_pca(checkpoint, out / "pca.png", cache, views)
    click.echo(f"wrote {pca}")
    run = resolve_checkpoint(checkpoint).parent
    if (run / "log.jsonl").exists():
        click.echo(f"wrote {plot_losses(run, out / 'losses.png')}")
        gauge = plot_gauge(run, out / "gauge.png")
        if gauge is not None:
            click.echo(f"wrote {gauge}")
