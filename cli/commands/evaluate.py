"""``proteus eval``: kNN, linear probe, and teacher agreement of a distilled student."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from proteus.options import Location, checkpoint_option, device_option


def _apply(func: Callable, decorators: list) -> Callable:
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _source_options(func: Callable) -> Callable:
    """Where features come from: a checkpoint, a teacher, or an untrained student."""
    return _apply(
        func,
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
                "--image-size",
                type=click.IntRange(min=1),
                default=224,
                show_default=True,
                help="Input size of a teacher or a random student (a checkpoint keeps its own).",
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
        ],
    )


def _model_source(func: Callable) -> Callable:
    """The source options and the classification data (--train, --val)."""
    return _source_options(
        _apply(
            func,
            [
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
                    "--batch-size",
                    type=click.IntRange(min=1),
                    default=128,
                    show_default=True,
                    help="Images per forward pass (with --protocol dinov2 also the SGD batch: "
                    "DINOv2's 128 per GPU).",
                ),
            ],
        )
    )


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


def _dense_options(func: Callable) -> Callable:
    """What ``eval seg`` and ``eval depth`` share: the data, the probe's size and its name."""
    return _source_options(
        _apply(
            func,
            [
                click.option(
                    "--data",
                    type=click.Path(exists=True, file_okay=False, path_type=Path),
                    required=True,
                    help="The data set folder: ADE20K as released, NYU as DINOv2 reads it, or "
                    "train/ and val/ each with images/ and labels/ (seg) or depth/ (depth), "
                    "names matching (README 'Dense tasks').",
                ),
                click.option(
                    "--blocks",
                    type=click.Choice(["1", "4"]),
                    default="1",
                    show_default=True,
                    help="Patch features of the last block (DINOv2's 'linear'), or of the last "
                    "4 concatenated (its '+ms' / 'linear 4' heads).",
                ),
                click.option(
                    "--iterations",
                    type=click.IntRange(min=1),
                    default=None,
                    help="Training iterations of the head. [default: the protocol's]",
                ),
                click.option(
                    "--batch-size",
                    type=click.IntRange(min=1),
                    default=None,
                    help="Crops per iteration, and windows per forward at test. [default: "
                    "DINOv2's 16 (2 per GPU × 8)]",
                ),
                click.option(
                    "--lr",
                    type=click.FloatRange(min=0, min_open=True),
                    default=None,
                    help="AdamW's peak learning rate (the schedule keeps its shape). "
                    "[default: the protocol's]",
                ),
                click.option(
                    "--seed",
                    type=int,
                    default=0,
                    show_default=True,
                    help="Seeds the crops, the augmentation and the head's initialisation.",
                ),
                click.option(
                    "--pictures",
                    type=click.Path(dir_okay=False, path_type=Path),
                    default=None,
                    help="A PNG of the first 4 validation images: image | truth | prediction. "
                    "[default: RUN/eval/NAME.png with --checkpoint RUN, else none]",
                ),
                click.option(
                    "--name",
                    default=None,
                    help="What the result is called in RUN/eval/ and in `proteus compare`'s "
                    "columns (e.g. ade20k). [default: the task and variant: seg, seg_b4_ms, "
                    "depth, depth_b4]",
                ),
            ],
        )
    )


@eval_group.command()
@_dense_options
@click.option(
    "--classes",
    type=click.IntRange(min=1),
    default=None,
    help="Class count of a generic layout (class ids 0 … N−1 in the label PNGs). [default: "
    "ADE20K's 150 for the ADE20K layout; required otherwise]",
)
@click.option(
    "--ignore-index",
    type=click.IntRange(min=0),
    default=255,
    show_default=True,
    help="Label value that is not scored (ADE20K's 0 'other' becomes it).",
)
@click.option(
    "--multiscale/--single-scale",
    default=False,
    show_default=True,
    help="DINOv2's '+ms' test: the probabilities averaged over 5 scales (1–3 ×) and their "
    "mirror images. Use with --blocks 4 for its '+ms' row.",
)
def seg(**kwargs) -> None:
    """DINOv2's linear segmentation probe: mIoU on frozen patch features.

    A BatchNorm + 1×1 convolution on the patch tokens, logits upsampled bilinearly to the
    labels; ADE20K's protocol by default (AdamW 1e-3, poly schedule, 40,000 iterations of 16
    crops, random resize 0.5–2×, crops of the model's input size, flips, photometric
    distortion), sliding-window test. Data: ADE20K as released, or a folder with
    train/images, train/labels, val/images, val/labels (matching names) and --classes.
    """
    from proteus.evaluate.dense_probe import run_seg

    name, json_path, run = _dense_name(kwargs, "seg")
    result = run_seg(_dense_config(kwargs))
    click.echo(
        f"{result['model']}: mIoU {100 * result['miou']:.2f}% (pixel accuracy "
        f"{100 * result['pixel_accuracy']:.2f}%, {result['val_images']} val images)"
    )
    _finish(result, json_path, run, name)


@eval_group.command()
@_dense_options
@click.option(
    "--depth-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Depth PNG units per metre. [default: 1000 (millimetres, NYU)]",
)
@click.option(
    "--min-depth",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-3,
    show_default=True,
    help="Metres: the first depth bin, and the smallest valid depth.",
)
@click.option(
    "--max-depth",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Metres: the last depth bin, and the largest valid depth (NYU: 10).",
)
@click.option(
    "--flip-test/--no-flip-test",
    default=True,
    show_default=True,
    help="Average each prediction with that of the mirrored image (DINOv2's test).",
)
def depth(**kwargs) -> None:
    """DINOv2's linear depth probe: RMSE, AbsRel and δ1 on frozen patch features.

    The patch tokens with the class token concatenated to each, upsampled 4×, a 1×1
    convolution over 256 uniform depth bins with AdaBins' linear normalisation; NYU-Depth
    v2's protocol by default (SigLoss + gradient loss, AdamW 5e-3, cosine, 38,400 iterations
    of 16). Data: NYU as DINOv2 reads it (nyu_train.txt / nyu_test.txt, 16-bit PNGs in mm,
    Eigen crop), or a folder with train/images, train/depth, val/images, val/depth.
    """
    from proteus.evaluate.dense_probe import run_depth

    name, json_path, run = _dense_name(kwargs, "depth")
    result = run_depth(_dense_config(kwargs))
    click.echo(
        f"{result['model']}: RMSE {result['rmse']:.4f} m, AbsRel {result['abs_rel']:.4f}, "
        f"δ1 {100 * result['delta1']:.2f}% ({result['val_images']} val images)"
    )
    _finish(result, json_path, run, name)


@eval_group.command()
@click.argument("suite_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the results (OUT/results/MODEL/DATASET_PROTOCOL.json), the table "
    "(OUT/suite.csv, OUT/suite.json); a rerun skips the entries already there.",
)
@device_option
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars.")
def suite(suite_file: Path, out: Path, device: str, progress: bool) -> None:
    """Run every model on every data set and protocol a suite file names; print one table.

    Protocols: knn, linear, dinov2, dinov2-fast, seg, seg_ms, depth, depth_b4. The file's
    format and an example for the paper's benchmarks: examples/paper_suite.yaml.
    """
    import json

    from proteus.common.runtime.files import atomic_write_text
    from proteus.evaluate.suite import load_suite, run_suite, suite_table

    loaded = load_suite(suite_file, device=device, progress=progress)
    rows = run_suite(loaded, out, echo=click.echo)
    table = suite_table(rows)
    click.echo(table.text())
    table.write_csv(out / "suite.csv")
    atomic_write_text(out / "suite.json", json.dumps(rows, indent=2) + "\n")
    click.echo(f"table: {out / 'suite.csv'}")


def _dense_name(options: dict, task: str) -> tuple[str, Path | None, Path | None]:
    name = options.pop("name")
    if name is None:
        name = task + ("_b4" if options["blocks"] == "4" else "")
        name += "_ms" if options.get("multiscale") else ""
    run = options["checkpoint"]
    if options["pictures"] is None and run is not None and Path(run).is_dir():
        from proteus.common.runs.folder import RunFolder

        options["pictures"] = RunFolder(run).eval_dir / f"{name}.png"
    return name, options.pop("json_path"), run


def _dense_config(options: dict):
    from proteus.evaluate.config import DenseConfig

    options["blocks"] = int(options["blocks"])
    source = _source_config(options)
    return DenseConfig(source=source, **options)


def _source_config(options: dict):
    from proteus.evaluate.config import SourceConfig

    keys = ("checkpoint", "ema", "teacher", "weights", "student", "random_init", "image_size")
    return SourceConfig(**{k: options.pop(k) for k in keys})


def _probe_config(options: dict):
    from proteus.evaluate.config import ProbeConfig

    return ProbeConfig(source=_source_config(options), **options)


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
