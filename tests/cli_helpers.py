"""Running proteus commands in-process in tests: success, or a one-line error."""

from __future__ import annotations

from click.testing import CliRunner

from proteus.app import main


def ok(args) -> str:
    """The output of a command that must succeed."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def error(args) -> str:
    """The output of a command that must fail with a one-line error, never a traceback."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and "Traceback" not in result.output
    return result.output
