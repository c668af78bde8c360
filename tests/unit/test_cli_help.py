"""``--help`` of every command: every option has help text and a default said, nothing cut."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from eokafka.cli import cli

ROOT = typer.main.get_command(cli)  # typer's own click: groups have .commands


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if hasattr(group, "commands"):
        for name, command in group.commands.items():
            yield from _commands(command, (*path, name))
    else:
        yield path


def _command(path: tuple[str, ...]) -> Any:
    command = ROOT
    for name in path:
        command = command.commands[name]
    return command


def _options(path: tuple[str, ...]) -> list[Any]:
    return [p for p in _command(path).params if p.param_type_name == "option"]


COMMANDS = sorted(_commands(ROOT))


def test_the_new_commands_are_there() -> None:
    for path in [("topics", n) for n in ("list", "describe", "create", "delete")]:
        assert path in COMMANDS
    assert ("produce",) in COMMANDS and ("consume",) in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_option_says_what_it_does_and_its_default(path: tuple[str, ...]) -> None:
    for param in _options(path):
        if param.name == "help":
            continue
        text = param.help or ""
        assert text.strip(), f"{' '.join(path)} {param.opts[0]} has no help text"
        flag = param.is_flag and param.default is False and not param.secondary_opts
        said = "[default:" in text or (param.show_default and param.default not in (None, ""))
        assert flag or said, f"{' '.join(path)} {param.opts[0]}: no default shown"


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_at_80_columns_cuts_no_option_name(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines()), result.output
    for param in _options(path):
        for opt in param.opts + param.secondary_opts:
            assert opt in result.output, f"{opt} is not shown whole"
