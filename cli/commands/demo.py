"""``proteus demo``: the whole pipeline on a small offline data set."""

from __future__ import annotations

from pathlib import Path

import click

PLAN = """\
proteus demo runs the whole pipeline offline on a small real labelled image set:
  1. extract: teacher {teacher} over K recorded views of every image -> {out}/cache
  2. train:   student {student} for a few minutes on the CPU -> {out}/run
  3. eval:    kNN top-1 of teacher, distilled student and random-init student, as a table
  4. viz:     PCA pictures of patch features and loss curves as PNG files
The stages land issue by issue; until the evaluate/export/demo issue is in, this prints the plan.
Today: `proteus teachers` lists the teachers, `proteus --help` the commands."""


@click.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Your own ImageFolder tree instead of the embedded image set.",
)
@click.option(
    "--teacher",
    default="effnet_lite0",
    show_default=True,
    help="Teacher to distil (the default works offline).",
)
@click.option("--student", default="vit_ti16", show_default=True, help="Student to train.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("proteus-demo"),
    show_default=True,
    help="Folder for the cache, the run and the plots.",
)
def demo(data: Path | None, teacher: str, student: str, out: Path) -> None:
    """Extract, train, evaluate and plot on a small offline data set (under 10 min on CPU)."""
    click.echo(PLAN.format(teacher=teacher, student=student, out=out))
