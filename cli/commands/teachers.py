"""``proteus teachers``: the registry as a table."""

from __future__ import annotations

import click

from proteus.table import echo_table


@click.command()
def teachers() -> None:
    """List the teachers proteus knows: name, family, embed dim, patch size, default image
    size (and patch grid), normalisation mean/std, and where the weights come from.

    Any timm model also works as timm:<model> (CNNs included: final feature map -> patch
    tokens, pooled pre-logits -> cls). Every teacher accepts --weights FILE.
    """
    from proteus.common.models.teachers import list_teachers

    rows = [("name", "family", "dim", "patch", "size (grid)", "mean", "std", "weights")]
    for s in list_teachers():
        grid = s.image_size // s.patch_size
        rows.append(
            (
                s.name,
                s.family,
                str(s.embed_dim),
                str(s.patch_size),
                f"{s.image_size} ({grid}×{grid})",
                _triple(s.mean),
                _triple(s.std),
                s.source,
            )
        )
    echo_table(rows)
    click.echo("\nAlso: timm:<model> for any timm model, e.g. timm:convnext_tiny.fb_in1k")


def _triple(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:.3f}" for v in values)
