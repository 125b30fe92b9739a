"""``proteus demo``: the whole pipeline on a small offline data set."""

from __future__ import annotations

from pathlib import Path

import click

from proteus.options import device_option


@click.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Your own ImageFolder tree (with train/ and val/ sub-folders, or split 80/20) "
    "instead of scikit-learn's bundled digits.",
)
@click.option(
    "--teacher",
    default="effnet_lite0",
    show_default=True,
    help="Teacher to distil (the default works offline).",
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Teacher weights file, for teachers whose weights are not on this machine.",
)
@click.option("--student", default="vit_ti16", show_default=True, help="Student to train.")
@click.option(
    "--image-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Square input size; a multiple of both patch sizes.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Training steps (about 3 minutes on 2 CPU cores at the defaults).",
)
@click.option(
    "--views",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="K recorded views per training image.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("proteus-demo"),
    show_default=True,
    help="Folder for the data, cache, run, results.json and the plots. Rerunning resumes.",
)
@device_option
def demo(**kwargs) -> None:
    """Extract, train, evaluate and plot on a small offline data set (under 10 min on CPU).

    Prints the kNN top-1 of the teacher, the distilled student and a random-init student.
    """
    from proteus.demo_pipeline import DemoConfig, run_demo

    run_demo(DemoConfig(**kwargs), echo=click.echo)
