"""``proteus export``: a distilled backbone as timm-loadable safetensors or ONNX, checked."""

from __future__ import annotations

from pathlib import Path

import click

from proteus.options import checkpoint_option


@click.command()
@checkpoint_option(required=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for the model (model.safetensors or model.onnx) and config.json.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["timm", "onnx"]),
    default="timm",
    show_default=True,
    help="timm: safetensors + config for timm.create_model('local-dir:OUT'); the heads go "
    "beside in proteus_heads.safetensors. onnx: model.onnx with a dynamic batch (outputs "
    "summary, dense, and a convnet's feature_map), run with onnxruntime to check it.",
)
@click.option(
    "--heads/--no-heads",
    default=False,
    show_default=True,
    help="With --format onnx: also output each teacher's head projections (t1_summary, "
    "t1_dense, …), the student's features in teacher space.",
)
@click.option(
    "--tolerance",
    type=float,
    default=1e-4,
    show_default=True,
    help="The export is read back (timm.create_model / onnxruntime) and compared with the "
    "PyTorch student on sample inputs; a max |difference| above TOLERANCE × max(1, max "
    "|output|) is an error.",
)
@click.option(
    "--ema/--no-ema",
    default=None,
    help="Export the EMA student, or the raw one. [default: what the run's recipe "
    "evaluates: raw for proteus, EMA for legacy]",
)
def export(
    checkpoint: Path, out: Path, fmt: str, heads: bool, tolerance: float, ema: bool | None
) -> None:
    """Write the student backbone for use elsewhere, and check it reproduces the student.

    Load a timm export with timm.create_model("local-dir:OUT", pretrained=True); an ONNX one
    with onnxruntime.InferenceSession("OUT/model.onnx"). Inputs are normalised with the mean
    and std in OUT/config.json.
    """
    from proteus.evaluate.export import run_export

    result = run_export(checkpoint, out, ema, fmt=fmt, heads=heads, tolerance=tolerance)
    click.echo(f"checked with {result.check.describe()}")
    files = ", ".join(result.files)
    if fmt == "timm":
        click.echo(
            f"exported to {out} ({files}): timm.create_model('local-dir:{out}', pretrained=True)"
        )
    else:
        click.echo(
            f"exported to {out} ({files}): onnxruntime.InferenceSession('{out / 'model.onnx'}')"
        )
