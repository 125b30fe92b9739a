"""Options declared once: a config dataclass's field carries its default and its help.

``train/config.py`` and ``extract/config.py`` declare each run setting as ``option(default,
help=…)``; the command line (``cli/options.py: config_options``) builds its click options
from those fields, so a default or a help text cannot differ between the library and the
command line. Fields declared with a plain default are settings code passes (progress bars,
the view policy that ``--aug`` builds) and get no option of their own.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field
from typing import Any

KINDS = ("location", "file", "dir", "per_teacher", "hint", "int_list")


@dataclass(frozen=True)
class Option:
    """How a field appears on the command line. Everything left unset follows from the
    field: its name (``--batch-size`` for ``batch_size``), its type and its default."""

    help: str
    flag: str | None = None  # the option's name [default: --<field name with dashes>]
    # How to parse it where the field's type does not say: location (a path or an s3://,
    # gs://, file:// URL), file, dir (a local path), per_teacher (one number or one per
    # --cache), hint (S:T[@C]), int_list (19,39).
    kind: str | None = None
    choices: tuple[str, ...] = ()
    min: float | None = None  # numbers: the allowed range
    max: float | None = None
    min_open: bool = False
    negatable: bool = False  # a bool as --name/--no-name (else a flag that sets True)
    multiple: bool = False  # repeatable; the field holds a tuple
    required: bool = False
    show_default: bool = True
    metavar: str | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"option kind {self.kind!r}: one of {', '.join(KINDS)}")


def option(default: Any = MISSING, *, help: str, **cli: Any) -> Any:
    """A config field that is also a command-line option (``cli``: :class:`Option`'s
    fields). Without a default the option is required."""
    spec = Option(help, required=cli.pop("required", default is MISSING), **cli)
    if default is MISSING:
        return field(metadata={"option": spec})
    return field(default=default, metadata={"option": spec})


def option_of(f: Field) -> Option | None:
    """The command-line option a config field declares, if any."""
    return f.metadata.get("option")
