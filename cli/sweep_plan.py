"""``proteus sweep``: training variants over shared caches, one after another, then one table.

A sweep file names an output folder, the `proteus train` options every variant shares, the
variants (each a name and the options it changes) and, optionally, evaluations to run on each
trained variant. Options are written as on the command line, without the dashes:

    out: runs/ablation
    train: {cache: cache/dinov2, student: vit_s14, max-steps: 2000}
    variants:
      - name: proteus
      - name: token-only
        lambda-fea: 0
        lambda-patch: 0
    evaluate:
      knn: {train: data/train, val: data/val}

Every variant becomes the argument list of a real `proteus train` (and `proteus eval …`)
command, parsed by that command itself: the same checks, defaults and errors, and the same
lines when printed for a cluster (``--print-commands``). Re-running a sweep skips finished
variants and resumes interrupted ones.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from proteus.common.runs.folder import RunFolder
from proteus.common.runtime.errors import Interrupted, ProteusError
from proteus.common.runtime.files import read_yaml
from proteus.options import HintPair

if TYPE_CHECKING:  # the config module imports torch; the sweep only needs the type here
    from proteus.train.config import TrainConfig

KEYS = ("out", "train", "variants", "evaluate")
EVALUATIONS = ("knn", "linear", "agreement")
_SET_BY_SWEEP = ("out", "resume", "checkpoint")
_RUN_ONLY = {"resume", "progress", "compile"}  # may differ between a run and its rerun


@dataclass(frozen=True)
class Variant:
    name: str
    out: Path
    train_args: tuple[str, ...]  # `proteus train` arguments, --out included
    config: TrainConfig  # what those arguments parse to
    evaluations: tuple[tuple[str, tuple[str, ...]], ...]  # (eval command, its arguments)


@dataclass(frozen=True)
class Sweep:
    source: Path
    out: Path
    variants: tuple[Variant, ...]

    @property
    def table_path(self) -> Path:
        return self.out / "compare.csv"


def load_sweep(path: Path) -> Sweep:
    """Read and check a sweep file; every variant's options are parsed before anything runs."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ProteusError(f"{path}: expected a mapping with keys {', '.join(KEYS)}")
    unknown = set(data) - set(KEYS)
    if unknown:
        raise ProteusError(f"{path}: unknown keys {sorted(unknown)}; known: {', '.join(KEYS)}")
    if not data.get("out"):
        raise ProteusError(f"{path}: needs out: the folder each variant trains into (OUT/NAME)")
    out = Path(data["out"])
    shared = _mapping(data.get("train") or {}, f"{path}: train")
    variants = data.get("variants")
    if not isinstance(variants, list) or not variants:
        raise ProteusError(f"{path}: needs variants: a list of {{name: …, options…}}")
    evaluate = _mapping(data.get("evaluate") or {}, f"{path}: evaluate")
    unknown = set(evaluate) - set(EVALUATIONS)
    if unknown:
        raise ProteusError(
            f"{path}: evaluate: unknown {sorted(unknown)}; choose from {', '.join(EVALUATIONS)}"
        )
    seen: set[str] = set()
    built = []
    for index, entry in enumerate(variants):
        entry = _mapping(entry, f"{path}: variant {index + 1}")
        name = str(entry.pop("name", "") or "")
        if not name or name in seen or "/" in name or name.startswith("."):
            raise ProteusError(
                f"{path}: variant {index + 1}: needs a unique name usable as a folder name "
                f"(got {name!r})"
            )
        seen.add(name)
        built.append(_variant(path, name, out / name, shared | entry, evaluate))
    return Sweep(Path(path), out, tuple(built))


def _variant(source: Path, name: str, run: Path, options: dict, evaluate: dict) -> Variant:
    from proteus.commands.evaluate import eval_group
    from proteus.commands.train import train, train_config

    where = f"{source}: variant {name}"
    args = (*command_args(train, options, where), "--out", str(run))
    config = train_config(_parse(train, args, where))
    evaluations = []
    for kind, entries in evaluate.items():
        command = eval_group.commands[kind]
        # A list runs the evaluation once per entry, e.g. agreement with each teacher's cache.
        for entry in entries if isinstance(entries, list) else [entries]:
            eval_where = f"{source}: evaluate: {kind}"
            eval_args = (
                *command_args(command, _mapping(entry, eval_where), eval_where),
                "--checkpoint",
                str(run),
            )
            _parse(command, eval_args, eval_where)
            evaluations.append((kind, eval_args))
    return Variant(name, run, args, config, tuple(evaluations))


def command_args(command: click.Command, options: dict[str, Any], where: str) -> list[str]:
    """Option mapping → argument list: lists repeat a repeatable option and are joined with
    commas otherwise; true/false switch a flag."""
    options_of = [p for p in command.params if isinstance(p, click.Option)]
    flags = {opt.lstrip("-"): p for p in options_of for opt in p.opts + p.secondary_opts}
    args: list[str] = []
    for key, value in options.items():
        flag = str(key).replace("_", "-")
        param = flags.get(flag)
        if param is None or flag in _SET_BY_SWEEP or flag == "help":
            known = sorted({p.opts[0].lstrip("-") for p in flags.values()} - set(_SET_BY_SWEEP))
            set_by = " (the sweep sets it)" if flag in _SET_BY_SWEEP else ""
            raise ProteusError(
                f"{where}: {key!r} is not an option of `proteus {command.name}`{set_by}; "
                f"options: {', '.join(known)}"
            )
        if value is not None:
            args += _option_args(flag, param, value, f"{where}: {key}")
    return args


def _option_args(flag: str, param: click.Option, value: Any, where: str) -> list[str]:
    if param.is_flag:
        if not isinstance(value, bool):
            raise ProteusError(f"{where}: a switch; write true or false")
        if param.secondary_opts:
            return [param.opts[0] if value else param.secondary_opts[0]]
        return [f"--{flag}"] if value else []
    items = value if isinstance(value, list) else [value]
    if isinstance(param.type, HintPair) and not all(isinstance(i, str) for i in items):
        raise ProteusError(f"{where}: quote each pair ('5:19'); YAML reads 5:19 as a number")
    if param.multiple:
        return [part for item in items for part in (f"--{flag}", _text(item))]
    return [f"--{flag}", ",".join(map(_text, items))]


def run_sweep(sweep: Sweep, only: tuple[str, ...] = (), together: bool = False):
    """Train (or resume, or skip) each variant, evaluate it, then print and save the table.
    ``together``: variants that can share a stream train in one run (together_groups)."""
    from proteus.evaluate.compare import compare_runs

    chosen = _chosen(sweep, only)
    groups = together_groups(chosen) if together else [[v] for v in chosen]
    if together:
        for line in plan_lines(groups):
            click.echo(line)
    failed: list[str] = []
    number = 0
    for group in groups:
        number += len(group)
        click.secho(f"[{number}/{len(chosen)}] {', '.join(v.name for v in group)}", bold=True)
        failed += _run_group(group)
    runs = [v.out for v in sweep.variants if RunFolder(v.out).is_run()]
    if runs:
        table = compare_runs(runs)
        click.echo(table.text())
        table.write_csv(sweep.table_path)
        click.echo(f"table written to {sweep.table_path}")
    if failed:
        raise ProteusError(
            f"{len(failed)} of {len(chosen)} variants failed: {'; '.join(failed)}. Rerun the "
            "sweep to retry them; finished variants are skipped"
        )


def _run_group(group: list[Variant]) -> list[str]:
    """Train a group (one variant, or several in one stream) and evaluate each variant it
    trained; returns a line for each variant that failed."""
    names = ", ".join(v.name for v in group)
    try:
        trained = _train(group[0]) if len(group) == 1 else _train_together(group)
    except Interrupted:
        raise
    except ProteusError as exc:  # this group's problem: the others still run
        click.echo(f"Error: variant {names}: {exc}", err=True)
        return [f"{v.name} ({exc})" for v in group]
    failed = []
    for variant in group:
        error = trained.get(variant.name) if isinstance(trained, dict) else None
        if error:
            failed.append(f"{variant.name} ({error})")
            continue
        try:
            now = variant.name in trained if isinstance(trained, dict) else trained
            _evaluate(variant, rerun=now)
        except Interrupted:
            raise
        except ProteusError as exc:
            click.echo(f"Error: variant {variant.name}: {exc}", err=True)
            failed.append(f"{variant.name} ({exc})")
    return failed


def together_groups(variants: list[Variant]) -> list[list[Variant]]:
    """The variants in groups that share one stream (train/together.py: the same cache,
    views, seed, batch, masks and schedule length), in file order of each group's first."""
    from proteus.train.together import stream_mismatch

    groups: list[list[Variant]] = []
    for variant in variants:
        for group in groups:
            if not stream_mismatch(group[0].config, variant.config):
                group.append(variant)
                break
        else:
            groups.append([variant])
    return groups


def plan_lines(groups: list[list[Variant]]) -> list[str]:
    """What --together will do: which variants share a stream, and why the others cannot."""
    from proteus.train.together import stream_mismatch

    lines = []
    for group in groups:
        if len(group) > 1:
            lines.append(f"together: {', '.join(v.name for v in group)} (one stream)")
            continue
        variant, first = group[0], groups[0][0]
        why = "; ".join(stream_mismatch(first.config, variant.config))
        lines.append(
            f"alone: {variant.name}"
            + (f" (its stream differs from {first.name}'s: {why})" if why else "")
        )
    return lines


def print_commands(
    sweep: Sweep, nproc: int, only: tuple[str, ...] = (), together: bool = False
) -> list[str]:
    """The shell lines that run the same sweep by hand or in cluster jobs; ``together``: a
    group that shares a stream is one `proteus sweep --together --only …` line."""
    launcher = (
        ["torchrun", f"--nproc_per_node={nproc}", "-m", "proteus"] if nproc > 1 else ["proteus"]
    )
    lines = []
    chosen = _chosen(sweep, only)
    groups = together_groups(chosen) if together else [[v] for v in chosen]
    for group in groups:
        if len(group) > 1:
            picks = [part for v in group for part in ("--only", v.name)]
            lines.append(shlex.join([*launcher, "sweep", str(sweep.source), "--together", *picks]))
            continue
        variant = group[0]
        lines.append(shlex.join([*launcher, "train", *variant.train_args]))
        lines += [
            shlex.join(["proteus", "eval", kind, *args]) for kind, args in variant.evaluations
        ]
    runs = [str(v.out) for v in sweep.variants]
    lines.append(shlex.join(["proteus", "compare", *runs, "--csv", str(sweep.table_path)]))
    return lines


def _chosen(sweep: Sweep, only: tuple[str, ...]) -> list[Variant]:
    names = [v.name for v in sweep.variants]
    missing = [n for n in only if n not in names]
    if missing:
        raise ProteusError(
            f"--only {', '.join(missing)}: no such variant in {sweep.source} "
            f"(it has {', '.join(names)})"
        )
    return [v for v in sweep.variants if not only or v.name in only]


def _train(variant: Variant) -> bool:
    """Run, resume or skip the variant's training; True if it trained now."""
    from proteus.commands.train import train

    args = list(variant.train_args)
    run = RunFolder(variant.out)
    if run.has_checkpoint():
        _check_same_options(variant, run.read_config().get("config", {}))
        if run.finished():
            click.echo(f"{variant.name}: already trained, skipping")
            return False
        click.echo(f"{variant.name}: resuming from its checkpoint")
        args.append("--resume")
    with train.make_context("train", args) as ctx:
        train.invoke(ctx)
    return True


def _train_together(group: list[Variant]) -> dict[str, str | None] | bool:
    """Train the group's unfinished variants in one stream (resuming those with a
    checkpoint). Returns, per variant trained now, why it stopped early (None: it finished);
    False when every variant was already trained."""
    from dataclasses import replace

    from proteus.commands.train import report
    from proteus.train.runner import run_together

    configs, names = [], []
    for variant in group:
        run = RunFolder(variant.out)
        config = variant.config
        if run.has_checkpoint():
            _check_same_options(variant, run.read_config().get("config", {}))
            if run.finished():
                click.echo(f"{variant.name}: already trained, skipping")
                continue
            click.echo(f"{variant.name}: resuming from its checkpoint")
            config = replace(config, resume=True)
        configs.append(config)
        names.append(variant.name)
    if not configs:
        return False
    results = run_together(configs)
    try:
        report(results)
    except ProteusError as exc:
        click.echo(f"Error: {exc}", err=True)
    return {name: r.error for name, r in zip(names, results, strict=True)}


def _evaluate(variant: Variant, rerun: bool) -> None:
    from proteus.commands.evaluate import eval_group

    for kind, args in variant.evaluations:
        kept = list(RunFolder(variant.out).eval_dir.glob(f"{kind}*.json"))
        if kept and not rerun:
            continue
        command = eval_group.commands[kind]
        with command.make_context(kind, list(args)) as ctx:
            command.invoke(ctx)


def _check_same_options(variant: Variant, stored: dict[str, Any]) -> None:
    """A rerun must not continue a run folder with other options than it was started with."""
    from proteus.train.config import TrainConfig

    wanted = variant.config.to_json()
    # An option newer than the run folder is the same when left at its default.
    defaults = {
        f.name: json.loads(json.dumps(f.default, default=str))
        for f in fields(TrainConfig)
        if f.default is not MISSING
    }
    changed = [
        f"{k}: {stored.get(k)!r} → {wanted.get(k)!r}"
        for k in wanted
        if k not in _RUN_ONLY
        and stored.get(k) != wanted.get(k)
        and not (k not in stored and k in defaults and wanted[k] == defaults[k])
    ]
    if changed:
        raise ProteusError(
            f"{variant.out} was trained with other options ({'; '.join(changed)}); delete "
            "it or rename the variant to train the new options"
        )


def _parse(command: click.Command, args, where: str) -> dict[str, Any]:
    try:
        with command.make_context(command.name, list(args)) as ctx:
            return dict(ctx.params)
    except click.ClickException as exc:
        raise ProteusError(f"{where}: {exc.format_message()}") from None


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ProteusError(f"{where}: expected a mapping of option: value")
    return dict(value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
