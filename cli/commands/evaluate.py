"""``proteus eval``: kNN, linear probe, and teacher agreement of a distilled student."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from proteus.options import checkpoint_option, device_option
from proteus.pending import not_built_yet


def _model_source(func: Callable) -> Callable:
    """Where features come from: a checkpoint, a teacher, or an untrained student."""
    for decorator in reversed(
        [
            checkpoint_option(required=False),
            click.option(
                "--ema/--no-ema",
                default=True,
                show_default=True,
                help="With --checkpoint: use the EMA student rather than the raw one.",
            ),
            click.option(
                "--teacher",
                default=None,
                help="Evaluate a teacher instead (registry name or timm:<model>).",
            ),
            click.option(
                "--weights",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help="With --teacher: a local weights file.",
            ),
            click.option(
                "--student",
                default=None,
                help="With --random-init: the untrained student as a baseline.",
            ),
            click.option(
                "--random-init",
                is_flag=True,
                help="With --student: evaluate random weights (the floor to beat).",
            ),
            click.option(
                "--train",
                "train_dir",
                type=click.Path(path_type=Path),
                required=True,
                help="ImageFolder tree the probe is fitted on.",
            ),
            click.option(
                "--val",
                "val_dir",
                type=click.Path(path_type=Path),
                required=True,
                help="ImageFolder tree top-1 is measured on.",
            ),
            click.option(
                "--image-size",
                type=click.IntRange(min=1),
                default=224,
                show_default=True,
                help="Evaluation image size (center crop).",
            ),
            click.option(
                "--batch-size",
                type=click.IntRange(min=1),
                default=128,
                show_default=True,
                help="Images per forward pass.",
            ),
            click.option(
                "--json",
                "json_path",
                type=click.Path(path_type=Path),
                default=None,
                help='Also write the results as JSON, e.g. {"top1": ...}.',
            ),
            device_option,
        ]
    ):
        func = decorator(func)
    return func


@click.group("eval")
def eval_group() -> None:
    """Measure a distilled student (or a teacher, or a random baseline)."""


@eval_group.command()
@_model_source
@click.option(
    "--k",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Neighbours voting (DINO protocol).",
)
@click.option(
    "--temperature",
    type=float,
    default=0.07,
    show_default=True,
    help="Softmax temperature of the neighbour weights.",
)
def knn(**kwargs) -> None:
    """Weighted k-nearest-neighbour top-1 on frozen cls features (DINO protocol)."""
    not_built_yet("eval knn", "evaluate/export/demo")


@eval_group.command()
@_model_source
@click.option(
    "--holdout",
    type=click.FloatRange(0.05, 0.5),
    default=0.1,
    show_default=True,
    help="Share of --train held out to choose the regularisation.",
)
def linear(**kwargs) -> None:
    """Linear probe on frozen features (cls, and cls + mean patch)."""
    not_built_yet("eval linear", "evaluate/export/demo")


@eval_group.command()
@checkpoint_option(required=True)
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    required=True,
    help="A cache of views the student never trained on.",
)
@device_option
def agreement(**kwargs) -> None:
    """Cosine and MSE between the student's heads and the teacher's cached targets."""
    not_built_yet("eval agreement", "evaluate/export/demo")
