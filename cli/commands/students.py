"""``proteus students``: the student registry as a table."""

from __future__ import annotations

import click

from proteus.table import echo_table


@click.command()
def students() -> None:
    """List the named students: kind, the timm architecture, pixels per dense token (a ViT's
    patch, a convnet's stride) and the dense width.

    Any timm backbone also works as timm:<model>: a plain ViT keeps its tokens; any other
    model with a feature map (CNNs, hierarchical hybrids) is a convnet student, its pooled
    features the summary and its last map, resampled to the teacher's grid, the dense tokens.
    """
    from proteus.common.models.students import list_students

    rows = [("name", "kind", "timm arch", "stride", "dense dim")]
    rows += [(s.name, s.kind, s.arch, str(s.patch_size), str(s.embed_dim)) for s in list_students()]
    echo_table(rows)
    click.echo("\nAlso: timm:<model> for any timm backbone, e.g. timm:regnety_016")
