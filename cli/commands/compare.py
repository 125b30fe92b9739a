"""``proteus compare``: one table over training run folders."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the table as CSV. [default: compare.csv next to the first run]",
)
def compare(runs: tuple[Path, ...], csv_path: Path | None) -> None:
    """Compare training runs: the options that differ between them, final losses (mean of the
    last 5% of steps), kNN/linear top-1 and teacher agreement where `proteus eval` was run on
    the run folder, median images/s and training time (the sum of step times, in seconds).
    """
    from proteus.evaluate.compare import compare_runs

    table = compare_runs(list(runs))
    click.echo(table.text())
    path = csv_path or Path(runs[0]).parent / "compare.csv"
    table.write_csv(path)
    click.echo(f"table written to {path}")
