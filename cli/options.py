"""Option types and option groups shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click


class IntList(click.ParamType):
    """A comma-separated list of integers, e.g. ``--layers 19,39`` or ``--layers -1``."""

    name = "INT,INT,…"

    def convert(self, value, param, ctx) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(int(part) for part in str(value).split(",") if part.strip())
        except ValueError:
            self.fail(
                f"{value!r} is not a comma-separated list of integers (e.g. 19,39)", param, ctx
            )


DEVICE = click.Choice(["auto", "cpu", "cuda"])


def teacher_options(func: Callable) -> Callable:
    """--teacher, --weights, --image-size: how a teacher is chosen and loaded."""
    func = click.option(
        "--image-size",
        type=click.IntRange(min=1),
        default=None,
        help="Square input size in pixels, a multiple of the patch size. "
        "[default: the teacher's, 224 for the shipped ViTs]",
    )(func)
    func = click.option(
        "--weights",
        type=click.Path(dir_okay=False, path_type=str),
        default=None,
        help="Local weights file (safetensors, or a torch state dict loaded with "
        "weights_only=True) instead of the model hub. Needed for synclr_*.",
    )(func)
    return click.option(
        "--teacher",
        required=True,
        help="Registry name (see `proteus teachers`) or timm:<model> for any timm model.",
    )(func)


def device_option(func: Callable) -> Callable:
    return click.option(
        "--device",
        type=DEVICE,
        default="auto",
        show_default=True,
        help="Where the model runs; auto picks cuda when a GPU is visible.",
    )(func)


render_threads_option = click.option(
    "--threads",
    "render_threads",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="DALI CPU threads for decoding and augmenting.",
)


def checkpoint_option(required: bool) -> Callable[[Callable], Callable]:
    """--checkpoint: every command that reads a student takes a run folder or a file."""
    return click.option(
        "--checkpoint",
        type=click.Path(path_type=Path),
        required=required,
        default=None,
        help="A run folder (its latest checkpoint) or a checkpoint file.",
    )
