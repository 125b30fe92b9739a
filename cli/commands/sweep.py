"""``proteus sweep``: run training variants from a YAML file, then compare them."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--print-commands",
    is_flag=True,
    help="Print the `proteus train`/`eval`/`compare` lines instead of running them, e.g. to "
    "submit each variant as a cluster job.",
)
@click.option(
    "--nproc-per-node",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --print-commands: above 1, training lines start with `torchrun "
    "--nproc_per_node=N -m proteus`.",
)
@click.option(
    "--only",
    multiple=True,
    metavar="NAME",
    help="Run (or print) only this variant; repeatable.",
)
@click.option(
    "--together",
    is_flag=True,
    help="Train the variants that share cache, views, seed, batch, masks and schedule length "
    "in one run: each step is rendered and read once and steps every one of them (each "
    "still in OUT/NAME). The plan printed first says which share a stream and why the "
    "others train alone.",
)
def sweep(
    config: Path, print_commands: bool, nproc_per_node: int, only: tuple[str, ...], together: bool
) -> None:
    """Train the variants of CONFIG one after another over shared caches, evaluate each, and
    print one comparison table (also written to OUT/compare.csv).

    CONFIG is YAML: `out` (each variant trains into OUT/NAME), `train` (the `proteus train`
    options all variants share, without dashes), `variants` (a list of `name` plus the options
    it changes) and optionally `evaluate` (`knn`, `linear` and/or `agreement`, each with the
    options of that `proteus eval` command, or a list of such option sets to run it several
    times). Lists repeat options like cache and hint, or join per-teacher values
    (lambda-token: [1, 0.5]). Quote hints: hint: ['5:19']. Paths are relative to the folder
    the sweep is run from.

    Every variant is checked before the first one trains. Re-running the sweep skips finished
    variants and resumes interrupted ones; a variant whose options changed is refused.
    """
    from proteus.sweep_plan import load_sweep, run_sweep
    from proteus.sweep_plan import print_commands as lines_of

    plan = load_sweep(config)
    if print_commands:
        for line in lines_of(plan, nproc_per_node, only, together):
            click.echo(line)
        return
    run_sweep(plan, only, together)
