"""``proteus train``: distil a student from a cache, replaying the recorded views."""

from __future__ import annotations

import click

from proteus.options import config_options, view_options, view_policy
from proteus.train.config import TrainConfig


@click.command()
@config_options(TrainConfig)
@view_options
def train(**kwargs) -> None:
    """Train a student with the Proteus token, feature and patch losses (and optional
    intermediate-layer hints), from a cache or with the teacher online.

    From --cache the teacher is never loaded: each step renders the recorded views again and
    reads their cached targets. With --teacher NAME --data DIR the teacher runs on a fresh
    view of every sample, as the reference trains (the control for what a cache costs).
    With --cache, --teacher (the cache's) and --online-fraction P, a share P of every batch
    is fresh views scored by the teacher and the rest is read from the cache: a long
    schedule then replays the recorded views less often.

    With --student repeated, the students train from one stream: every step's views are
    rendered and their targets read once, and each student steps on them with its own heads,
    optimizer, EMA, log and checkpoint in --out/NAME (an ordinary run folder each; `proteus
    sweep --together` does the same for variants with other λ, lr or hints). A student whose
    loss diverges stops with a message naming it; the others go on.

    Under `torchrun --nproc_per_node N` it runs DDP (gloo on CPU, nccl on GPU).
    """
    from proteus.train.runner import run_together

    report(run_together(train_configs(kwargs)))


def report(results) -> None:
    """Each student's last losses; a student that stopped early makes the command fail
    after the others have finished."""
    from proteus.common.runtime.errors import ProteusError

    for result in results:
        if result.last and result.error is None:
            last = result.last
            parts = ", ".join(f"{k} {last[k]:.4g}" for k in last if k.startswith("loss"))
            click.echo(f"trained {result.steps} steps into {result.run}: {parts}")
    stopped = [r for r in results if r.error is not None]
    if stopped:
        raise ProteusError(
            f"{len(stopped)} of {len(results)} students stopped early: "
            + "; ".join(str(r.error) for r in stopped)
        )


def train_configs(params: dict) -> list:
    """One TrainConfig per --student (several: each in --out/NAME)."""
    from proteus.train.together import split_students

    given = params.get("student") or ()
    students: tuple[str, ...] = (given,) if isinstance(given, str) else tuple(given)
    if not students:
        from proteus.common.runtime.errors import ProteusError

        raise ProteusError("--student: give at least one (`proteus students` lists them)")
    first = train_config(params | {"student": students[0]})
    return split_students(first, students)


def train_config(params: dict):
    """The TrainConfig of parsed `proteus train` options for one student (`proteus sweep`:
    a variant trains one)."""
    from proteus.common.runtime.errors import ProteusError

    students = params.get("student")
    if isinstance(students, tuple | list):
        if len(students) != 1:
            raise ProteusError(
                f"--student {' --student '.join(students)}: a sweep variant trains one student; "
                "give each its own variant and run the sweep with --together"
            )
        params = params | {"student": students[0]}
    caches = tuple(params.get("cache") or ())
    cache = caches[0] if len(caches) == 1 else (caches or None)
    params = dict(params)
    policy = view_policy(params.pop("augs", ()), params.pop("no_aug", False), params["aug_preset"])
    cfg = TrainConfig(**(params | {"cache": cache, "policy": policy}))
    cfg.check_source()
    cfg.recipe_of()  # an unknown name: one line that lists the known ones
    return cfg
