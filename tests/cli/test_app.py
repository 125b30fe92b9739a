"""The command line: every command present, every option explained, errors on one line."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from proteus.app import main

COMMANDS = ["extract", "train", "eval", "cache", "teachers", "demo", "export", "viz"]


def _walk(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, (*prefix, name))


def test_top_level_help_lists_every_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.output


@pytest.mark.parametrize(
    "path, command", list(_walk(main)), ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_every_command_and_option_has_help(path, command):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert command.help, f"proteus {' '.join(path)} has no description"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"proteus {' '.join(path)} {param.opts[0]} has no help"


def test_python_dash_m_works():
    run = subprocess.run(
        [sys.executable, "-m", "proteus", "--help"], capture_output=True, text=True
    )
    assert run.returncode == 0 and "extract" in run.stdout


def test_teachers_table():
    result = CliRunner().invoke(main, ["teachers"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split()[:5] == ["name", "family", "dim", "patch", "size"]
    row = next(line for line in lines if line.startswith("dinov2_g "))
    assert row.split()[1:5] == ["dinov2", "1536", "14", "224"]
    assert "(16×16)" in row and "0.485,0.456,0.406" in row
    clip = next(line for line in lines if line.startswith("clip_l14 "))
    assert "0.481,0.458,0.408" in clip and "openai" in clip
    assert "timm:<model>" in result.output


def test_user_errors_are_one_line_without_traceback():
    result = CliRunner().invoke(
        main, ["train", "--cache", "c", "--student", "vit_s14", "--out", "r"]
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "Traceback" not in result.output


def test_bad_layers_value_names_the_option():
    result = CliRunner().invoke(
        main, ["extract", "--teacher", "dinov2_s", "--data", "d", "--out", "o", "--layers", "3,x"]
    )
    assert result.exit_code == 2 and "--layers" in result.output
