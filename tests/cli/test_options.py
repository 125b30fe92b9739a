"""Options are declared once, on the config dataclasses: the command line is built from them."""

from __future__ import annotations

import dataclasses

import click
import pytest

from proteus.app import main
from proteus.common.runtime.options import option_of
from proteus.extract.config import ExtractConfig
from proteus.train.config import TrainConfig

# Settings code passes (no option of their own): the view policy --aug/--no-aug build, the
# progress bars, and extraction's random-init teacher for tests and benchmarks.
NOT_OPTIONS = {"policy", "progress", "pretrained"}


@pytest.mark.parametrize(
    ("config", "command"), [(TrainConfig, "train"), (ExtractConfig, "extract")]
)
def test_every_config_field_is_an_option_with_its_default_and_help(config, command):
    params = {p.name: p for p in main.commands[command].params}
    for f in dataclasses.fields(config):
        spec = option_of(f)
        if f.name in NOT_OPTIONS:
            assert spec is None and f.name not in params, f.name
            continue
        assert spec is not None, f"{config.__name__}.{f.name} declares no option"
        param = params[f.name]
        assert param.help == spec.help and spec.help.strip(), f.name
        assert param.required == (f.default is dataclasses.MISSING and spec.required), f.name
        if f.default is not dataclasses.MISSING:
            want = tuple(f.default) if spec.multiple else f.default
            assert param.default == want, f.name


def test_parsing_no_options_gives_the_config_defaults():
    """What `proteus train --cache C --student S --out O` hands the trainer is exactly the
    dataclass with those three set."""
    from proteus.commands.train import train_config

    command = main.commands["train"]
    ctx = command.make_context("train", ["--cache", "c", "--student", "s", "--out", "o"])
    parsed = train_config(ctx.params)
    default = TrainConfig(cache=parsed.cache, student="s", out=parsed.out)
    assert parsed == default


def test_flags_and_types_follow_the_fields():
    params = {p.name: p for p in main.commands["train"].params}
    assert params["hints"].opts == ["--hint"] and params["hints"].multiple
    assert params["render_threads"].opts == ["--threads"]
    assert params["tensorboard"].secondary_opts == ["--no-tensorboard"]
    assert params["resume"].is_flag and not params["resume"].secondary_opts
    assert isinstance(params["loss"].type, click.Choice)
    assert isinstance(params["batch_size"].type, click.IntRange)
