"""Option types and option groups shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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
        from proteus.common.models.parts import Hint
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


def view_options(func: Callable) -> Callable:
    """--aug and --no-aug: single settings of the view policy, on top of --aug-preset (a
    config field); ``view_policy`` turns them into the policy."""
    from proteus.common.views.records import AUG_FIELDS

    func = click.option(
        "--no-aug",
        is_flag=True,
        help="No augmentation at all: one centred square crop per view (use with --views 1).",
    )(func)
    return click.option(
        "--aug",
        "augs",
        multiple=True,
        metavar="NAME=VALUE",
        help="Change one setting of the --aug-preset, e.g. --aug erase_prob=0 --aug "
        "crop_scale=0.25,1 (the value given here wins). Names: " + ", ".join(AUG_FIELDS) + ". "
        "A probability of 0 turns that augmentation off.",
    )(func)


def view_policy(augs: tuple[str, ...], no_aug: bool, preset: str):
    """The AugPolicy of --aug/--no-aug on --aug-preset; None when neither was given (the
    config then uses the preset's policy)."""
    from proteus.common.views.records import parse_policy

    if not augs and not no_aug:
        parse_policy((), preset=preset)  # an unknown preset: one line that lists the known
        return None
    return parse_policy(augs, no_aug, preset)


def config_options(config: type, exclude: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """The click options of every field of the dataclass ``config`` that declares one
    (common/runtime/options.py), in field order: each option's name, type, default and help
    come from its field, so the command line and the library cannot drift apart."""
    import dataclasses
    import typing

    from proteus.common.runtime.options import option_of

    hints = typing.get_type_hints(config)
    decorators = []
    for f in dataclasses.fields(config):
        spec = option_of(f)
        if spec is not None and f.name not in exclude:
            decorators.append(_click_option(f, spec, hints[f.name]))

    def apply(func: Callable) -> Callable:
        for decorate in reversed(decorators):
            func = decorate(func)
        return func

    return apply


_KIND_TYPES: dict[str, Callable[[], click.ParamType]] = {
    "location": Location,
    "per_teacher": PerTeacherFloat,
    "hint": HintPair,
    "int_list": IntList,
    "file": lambda: click.Path(dir_okay=False, path_type=Path),
    "dir": lambda: click.Path(file_okay=False, path_type=Path),
}


def _click_option(f, spec, annotation) -> Callable[[Callable], Callable]:
    import dataclasses

    flag = spec.flag or "--" + f.name.replace("_", "-")
    default = None if f.default is dataclasses.MISSING else f.default
    base = _base_type(annotation)
    kwargs: dict[str, Any] = {"help": spec.help, "required": spec.required}
    if spec.metavar:
        kwargs["metavar"] = spec.metavar
    if base is bool and spec.kind is None:
        name = flag.removeprefix("--")
        decls = [f"{flag}/--no-{name}"] if spec.negatable else [flag]
        if not spec.negatable:
            kwargs["is_flag"] = True
        show = spec.show_default and default is not None and spec.negatable
        return click.option(*decls, f.name, default=default, show_default=show, **kwargs)
    kwargs |= {"type": _param_type(spec, base), "multiple": spec.multiple}
    if spec.multiple:
        default = tuple(default or ())
    show = spec.show_default and default not in (None, ())
    if not spec.required:
        kwargs["default"] = default
    return click.option(flag, f.name, show_default=show, **kwargs)


def _param_type(spec, base) -> Any:
    if spec.kind is not None:
        return _KIND_TYPES[spec.kind]()
    if spec.choices:
        return click.Choice(list(spec.choices))
    if base in (int, float) and (spec.min is not None or spec.max is not None):
        kind = click.IntRange if base is int else click.FloatRange
        return kind(min=spec.min, max=spec.max, min_open=spec.min_open)
    if base is Path:
        return click.Path(path_type=Path)
    return base


def _base_type(annotation) -> Any:
    """The one type of a field's annotation that is not None (the first of a union)."""
    import types
    import typing

    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(a for a in args if a is not type(None))
    return annotation
