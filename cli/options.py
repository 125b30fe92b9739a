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


class Location(click.ParamType):
    """A local path, or an ``s3://``, ``gs://`` or ``file://`` URL (kept as text: a Path
    would fold its "//")."""

    name = "PATH|URL"

    def convert(self, value, param, ctx) -> Path | str:
        from proteus.common.storage.objectstore import is_url

        if isinstance(value, Path) or is_url(value):
            return value
        if "://" in str(value):
            self.fail(f"{value!r}: only s3://, gs:// and file:// URLs are supported", param, ctx)
        return Path(value)


class PerTeacherFloat(click.ParamType):
    """One number for every teacher (``0.5``), or one per ``--cache`` (``1,0.5``)."""

    name = "FLOAT[,FLOAT…]"

    def convert(self, value, param, ctx) -> float | tuple[float, ...]:
        if isinstance(value, float | int | tuple):
            return value
        try:
            parts = tuple(float(part) for part in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not a number or a comma-separated list of numbers", param, ctx)
        return parts[0] if len(parts) == 1 else parts


class HintPair(click.ParamType):
    """``S:T`` or ``S:T@C``: student block S learns teacher layer T of the C-th cache."""

    name = "S:T[@C]"

    def convert(self, value, param, ctx):
        from proteus.common.models.heads import Hint
        from proteus.common.runtime.errors import ProteusError

        if isinstance(value, Hint):
            return value
        try:
            return Hint.parse(str(value))
        except ProteusError as exc:
            self.fail(str(exc).removeprefix(f"--hint {value}: "), param, ctx)


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
