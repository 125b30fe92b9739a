"""``proteus cache``: inspect and check a target cache."""

from __future__ import annotations

from pathlib import Path

import click

_CACHE = click.argument("cache_dir", metavar="CACHE", type=click.Path(path_type=Path))


@click.group()
def cache() -> None:
    """Inspect (info) and check (verify) a cache written by `proteus extract`."""


@cache.command()
@_CACHE
def info(cache_dir: Path) -> None:
    """Print the manifest: teacher, weights hash, views, layers, dtypes, sizes, state."""
    from proteus.common.cache.describe import info_lines
    from proteus.common.cache.layout import read_manifest

    _exists(cache_dir)
    click.echo("\n".join(info_lines(cache_dir, read_manifest(cache_dir))))


@cache.command()
@_CACHE
@click.option(
    "--quick",
    is_flag=True,
    help="Check metadata, tables and that every shard file exists, without reading targets.",
)
def verify(cache_dir: Path, quick: bool) -> None:
    """Check completeness and integrity; name every damaged part; non-zero exit if any.

    The full check reads every target chunk (each has a crc32c) and looks for NaN/inf.
    """
    from proteus.common.cache.layout import read_manifest
    from proteus.common.cache.verify import verify_cache
    from proteus.common.progress import progress_bar

    _exists(cache_dir)
    manifest = read_manifest(cache_dir)
    total = 0 if quick else manifest.num_shards * len(manifest.arrays)
    with progress_bar(total=total, desc="verify", unit="shard", disable=quick, leave=False) as bar:
        problems = verify_cache(cache_dir, read_targets=not quick, on_shard=bar.update)
    if problems:
        for problem in problems:
            click.echo(f"DAMAGED  {problem}")
        raise click.ClickException(f"{cache_dir}: {len(problems)} problem(s) found")
    what = "metadata and shard files" if quick else "metadata and every target chunk"
    click.echo(f"OK  {cache_dir}: {what} checked, {manifest.counts.get('views')} views")


def _exists(path: Path) -> None:
    if not path.exists():
        raise click.ClickException(f"{path}: no such cache folder")
