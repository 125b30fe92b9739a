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

    Under `torchrun --nproc_per_node N` it runs DDP (gloo on CPU, nccl on GPU).
    """
    from proteus.train.runner import run_train

    result = run_train(train_config(kwargs))
    if result.last:
        parts = ", ".join(f"{k} {result.last[k]:.4g}" for k in result.last if k.startswith("loss"))
        click.echo(f"trained {result.steps} steps into {result.run}: {parts}")


def train_config(params: dict):
    """The TrainConfig of parsed `proteus train` options (also used by `proteus sweep`)."""
    caches = tuple(params.get("cache") or ())
    cache = caches[0] if len(caches) == 1 else (caches or None)
    params = dict(params)
    policy = view_policy(params.pop("augs", ()), params.pop("no_aug", False), params["aug_preset"])
    cfg = TrainConfig(**(params | {"cache": cache, "policy": policy}))
    cfg.check_source()
    cfg.recipe_of()  # an unknown name: one line that lists the known ones
    return cfg
