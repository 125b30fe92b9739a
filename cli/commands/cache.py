"""``proteus cache``: inspect and check a target cache."""

from __future__ import annotations

from pathlib import Path

import click

from proteus.pending import not_built_yet

_CACHE = click.argument("cache_dir", metavar="CACHE", type=click.Path(path_type=Path))


@click.group()
def cache() -> None:
    """Inspect (info) and check (verify) a cache written by `proteus extract`."""


@cache.command()
@_CACHE
def info(cache_dir: Path) -> None:
    """Print the manifest: teacher, weights hash, views, layers, dtypes, sizes, state."""
    not_built_yet("cache info", "extract-stage")


@cache.command()
@_CACHE
def verify(cache_dir: Path) -> None:
    """Check completeness and integrity; name every damaged part; non-zero exit if any."""
    not_built_yet("cache verify", "extract-stage")
