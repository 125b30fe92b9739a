"""``proteus eval``: kNN, linear probe, and teacher agreement of a distilled student."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from proteus.options import Location, checkpoint_option, device_option


def _model_source(func: Callable) -> Callable:
    """Where features come from: a checkpoint, a teacher, or an untrained student."""
    for decorator in reversed(
        [
            checkpoint_option(required=False),
            click.option(
                "--ema/--no-ema",
                default=None,
                help="With --checkpoint: the EMA student, or the raw one. [default: what the run's "
                "recipe evaluates: raw for proteus, EMA for legacy]",
            ),
            click.option(
                "--teacher",
                default=None,
                help="Evaluate a teacher instead (registry name or timm:<model>).",
            ),
            click.option(
                "--weights",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help="With --teacher: a local weights file.",
            ),
            click.option(
                "--student",
                default=None,
                help="With --random-init: the untrained student as a baseline.",
            ),
            click.option(
                "--random-init",
                is_flag=True,
                help="With --student: evaluate random weights (the floor to beat).",
            ),
            click.option(
                "--train",
                "train_dir",
                type=click.Path(path_type=Path),
                required=True,
                help="ImageFolder tree the probe is fitted on.",
            ),
            click.option(
                "--val",
                "val_dir",
                type=click.Path(path_type=Path),
                required=True,
                help="ImageFolder tree top-1 is measured on.",
            ),
            click.option(
                "--image-size",
                type=click.IntRange(min=1),
                default=224,
                show_default=True,
                help="Evaluation image size (center crop).",
            ),
            click.option(
                "--batch-size",
                type=click.IntRange(min=1),
                default=128,
                show_default=True,
                help="Images per forward pass (with --protocol dinov2 also the SGD batch: "
                "DINOv2's 128 per GPU).",
            ),
            click.option(
                "--json",
                "json_path",
                type=click.Path(path_type=Path),
                default=None,
                help='Also write the results as JSON, e.g. {"top1": ...}. With --checkpoint '
                "RUN (a run folder) they are always kept in RUN/eval/ too, for `proteus compare`.",
            ),
            device_option,
        ]
    ):
        func = decorator(func)  # type: ignore[arg-type]  # click's option list, applied in order
    return func


@click.group("eval")
def eval_group() -> None:
    """Measure a distilled student (or a teacher, or a random baseline)."""


@eval_group.command()
@_model_source
@click.option(
    "--k",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Neighbours voting (DINO protocol).",
)
@click.option(
    "--temperature",
    type=float,
    default=0.07,
    show_default=True,
    help="Softmax temperature of the neighbour weights.",
)
def knn(**kwargs) -> None:
    """Weighted k-nearest-neighbour top-1 on frozen cls features (DINO protocol)."""
    from proteus.evaluate.runner import run_knn

    json_path = kwargs.pop("json_path")
    run = kwargs["checkpoint"]
    result = run_knn(_probe_config(kwargs))
    click.echo(
        f"{result['model']}: kNN top-1 {100 * result['top1']:.2f}% "
        f"(top-5 {100 * result['top5']:.2f}%, k={result['k']}, "
        f"{result['val_images']} val images)"
    )
    _finish(result, json_path, run, "knn")


@eval_group.command()
@_model_source
@click.option(
    "--holdout",
    type=click.FloatRange(0.05, 0.5),
    default=0.1,
    show_default=True,
    help="Share of --train held out to choose the regularisation.",
)
@click.option(
    "--protocol",
    type=click.Choice(["sklearn", "dinov2", "dinov2-fast"]),
    default="sklearn",
    show_default=True,
    help="sklearn: logistic regression on standardised cls (± mean patch), C chosen on "
    "held-out --train (fast). dinov2: DINOv2's linear protocol exactly, the one the Proteus "
    "paper reports: classifiers for its 13 learning rates on the last 1 or 4 blocks' class "
    "tokens ± average-pooled patches, trained on fresh RandomResizedCrop + flip views of "
    "--train (features on the fly), 12,500 iterations of --batch-size 128 by default. "
    "dinov2-fast: the same classifiers on frozen centre-crop features (minutes, not hours).",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    default=None,
    help="With --protocol dinov2: SGD iterations, each on --batch-size fresh views [default: "
    "DINOv2's 10 epochs × 1250 = 12,500; the Proteus probing script: 25,020 at 512]. With "
    "dinov2-fast: SGD steps on the frozen features [default: 1000].",
)
def linear(**kwargs) -> None:
    """Linear probe on frozen features (cls, and cls + mean patch), or DINOv2's protocol."""
    from proteus.evaluate.runner import run_linear

    json_path = kwargs.pop("json_path")
    run = kwargs["checkpoint"]
    result = run_linear(_probe_config(kwargs))
    if str(result.get("protocol", "")).startswith("dinov2"):
        click.echo(
            f"{result['model']}: {result['protocol']} linear top-1 {100 * result['top1']:.2f}% "
            f"({result['features']}, lr {result['lr']:g}, chosen on held-out "
            f"--train); best on --val as the paper reports: "
            f"{100 * result['top1_best_on_val']:.2f}%"
        )
        _finish(result, json_path, run, "linear")
        return
    for name in ("cls", "cls_mean_patch"):
        part = result[name]
        click.echo(
            f"{result['model']}: linear top-1 {100 * part['top1']:.2f}% on {name} "
            f"(C={part['C']:g}, held-out {100 * part['holdout_top1']:.1f}%)"
        )
    click.echo(f"top-1 {100 * result['top1']:.2f}% ({result['features']}, chosen on held-out)")
    _finish(result, json_path, run, "linear")


@eval_group.command()
@checkpoint_option(required=True)
@click.option(
    "--cache",
    type=Location(),
    required=True,
    help="A cache of views the student never trained on.",
)
@click.option(
    "--ema/--no-ema",
    default=None,
    help="The EMA student, or the raw one. [default: what the run's recipe evaluates: "
    "raw for proteus, EMA for legacy]",
)
@click.option(
    "--max-views",
    type=click.IntRange(min=1),
    default=None,
    help="Score a seeded sample of this many views. [default: all usable views]",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Views per forward pass.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the results as JSON (they are always kept in RUN/eval/ when --checkpoint "
    "is a run folder).",
)
@device_option
def agreement(
    checkpoint: Path,
    cache: Path,
    ema: bool | None,
    max_views: int | None,
    batch_size: int,
    json_path: Path | None,
    device: str,
) -> None:
    """Cosine and MSE between the student's heads and the teacher's cached targets."""
    from proteus.common.runtime.distributed import resolve_device
    from proteus.evaluate.agreement import run_agreement

    result = run_agreement(
        checkpoint,
        cache,
        ema=ema,
        batch_size=batch_size,
        max_views=max_views,
        device=resolve_device(device),
    )
    for name in ("token", "fea", "patch"):
        if f"{name}_cosine" in result:
            click.echo(
                f"{name:>5}: cosine {result[f'{name}_cosine']:.4f}   "
                f"MSE {result[f'{name}_mse']:.4f}"
            )
    click.echo(f"over {result['views']} views of {cache}")
    teacher = "".join(c if c.isalnum() else "_" for c in result["teacher"])
    _finish(result, json_path, checkpoint, f"agreement_{teacher}")


def _probe_config(options: dict):
    from proteus.evaluate.config import ProbeConfig, SourceConfig

    source_keys = (
        "checkpoint",
        "ema",
        "teacher",
        "weights",
        "student",
        "random_init",
        "image_size",
    )
    source = SourceConfig(**{k: options.pop(k) for k in source_keys})
    return ProbeConfig(source=source, **options)


def _finish(result: dict, json_path: Path | None, run: Path | None, kind: str) -> None:
    """Print skipped images; write --json, and keep the result in the run folder's eval/."""
    import json

    from proteus.common.runs.folder import RunFolder
    from proteus.common.runtime.files import atomic_write_text

    skipped = result.get("skipped") or []
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable image(s), e.g. {skipped[0]}", err=True)
    text = json.dumps(result, indent=2) + "\n"
    targets = [("--json", json_path)] if json_path is not None else []
    if run is not None and Path(run).is_dir():
        targets.append(("--checkpoint", RunFolder(run).eval_result(kind)))
    for option, path in targets:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
        except OSError as exc:
            raise click.ClickException(f"{option}: cannot write {path} ({exc.strerror})") from exc
