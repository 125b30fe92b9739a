"""The ``proteus`` command: a click group whose commands parse options into configs.

Commands import their stage lazily, so ``proteus --help`` answers without loading torch.
"""

from __future__ import annotations

import click

from proteus.commands.cache import cache
from proteus.commands.compare import compare
from proteus.commands.demo import demo
from proteus.commands.evaluate import eval_group
from proteus.commands.export import export
from proteus.commands.extract import extract
from proteus.commands.students import students
from proteus.commands.sweep import sweep
from proteus.commands.teachers import teachers
from proteus.commands.train import train
from proteus.commands.viz import viz
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.version import __version__


class ProteusGroup(click.Group):
    """Turns :class:`ProteusError` into a one-line ``Error: …`` and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            from proteus.common.runtime.plugins import load_plugins

            load_plugins()
            return super().invoke(ctx)
        except ProteusError as exc:
            raise click.ClickException(str(exc)) from None


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=ProteusGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="proteus")
def main() -> None:
    """Distil vision foundation models (DINOv2, DINOv3, CLIP, SigLIP2, PE, RADIO, …) into small
    ViTs or convnets.

    A teacher runs once over K recorded views of every image (`extract`); any number of
    students then train from that cache (`train`), replaying the same views, without the
    teacher in memory.
    """


for command in (
    extract,
    train,
    sweep,
    compare,
    eval_group,
    cache,
    teachers,
    students,
    export,
    viz,
    demo,
):
    main.add_command(command)
