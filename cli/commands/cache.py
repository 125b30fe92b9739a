"""``proteus cache``: inspect and check a target cache."""

from __future__ import annotations

from pathlib import Path

import click

from proteus.options import Location

_CACHE = click.argument("cache_dir", metavar="CACHE", type=Location())


@click.group()
def cache() -> None:
    """Inspect (info) and check (verify) a cache written by `proteus extract`."""


@cache.command()
@_CACHE
def info(cache_dir: Path | str) -> None:
    """Print the manifest: teacher, weights hash, views, layers, dtypes, sizes, state.

    CACHE is a folder or an s3://, gs:// or file:// URL (its metadata is copied into the
    shard cache, $PROTEUS_SHARD_CACHE)."""
    from proteus.common.cache.describe import info_lines
    from proteus.common.cache.layout import read_manifest

    path, _mirror = _open(cache_dir)
    click.echo("\n".join(info_lines(cache_dir, read_manifest(path))))


@cache.command()
@_CACHE
@click.option(
    "--quick",
    is_flag=True,
    help="Check metadata, tables and that every shard file exists, without reading targets.",
)
def verify(cache_dir: Path | str, quick: bool) -> None:
    """Check completeness and integrity; name every damaged part; non-zero exit if any.

    The full check reads every target chunk (each has a crc32c) and looks for NaN/inf. A
    remote CACHE (s3://, gs://, file:// URL) has each shard fetched through the shard cache
    and checked there.
    """
    from proteus.common.cache.layout import read_manifest
    from proteus.common.cache.verify import verify_cache
    from proteus.common.runtime.progress import progress_bar

    path, mirror = _open(cache_dir)
    manifest = read_manifest(path)
    total = 0 if quick else manifest.num_shards * len(manifest.arrays)
    with progress_bar(total=total, desc="verify", unit="shard", disable=quick, leave=False) as bar:
        problems = verify_cache(path, read_targets=not quick, on_shard=bar.update, mirror=mirror)
    if problems:
        for problem in problems:
            click.echo(f"DAMAGED  {problem}")
        raise click.ClickException(f"{cache_dir}: {len(problems)} problem(s) found")
    what = "metadata and shard files" if quick else "metadata and every target chunk"
    click.echo(f"OK  {cache_dir}: {what} checked, {manifest.counts.get('views')} views")


def _open(location: Path | str):
    """The folder to read, and for a URL the mirror that fills it. Only the metadata is
    fetched here, and nothing more is opened: verify must list damage, not trip on it."""
    from proteus.common.cache.mirror import CacheMirror
    from proteus.common.storage.objectstore import is_url

    if is_url(location):
        mirror = CacheMirror(str(location), "CACHE", require_sealed=False, fresh=True)
        return mirror.path, mirror
    if not Path(location).exists():
        raise click.ClickException(f"{location}: no such cache folder")
    return Path(location), None
