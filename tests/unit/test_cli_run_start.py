"""``eokafka run`` without typer: the plain parser gives run() what typer's would, or leaves
the line to typer; and starting a worker from the command line loads no CLI framework."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import typer

from eokafka import cli_run
from eokafka.cli import cli
from eokafka.cli_run_start import RUN_OPTIONS, parse_run

RUN = typer.main.get_command(cli).commands["run"]  # typer's own click command
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def typer_params(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], dict[str, object]]:
    """What typer's parser and run() hand the command's work for ``eokafka run <argv>``."""

    def parse(argv: list[str]) -> dict[str, object]:
        seen: dict[str, object] = {}
        monkeypatch.setattr(cli_run, "start", lambda target, **kw: seen.update(target=target, **kw))
        RUN.invoke(RUN.make_context("run", list(argv)))
        return seen

    return parse


def test_the_options_are_typers(typer_params: Callable[[list[str]], dict[str, object]]) -> None:
    options = {p.name: p for p in RUN.params if p.param_type_name == "option"}
    assert {spec[0] for spec in RUN_OPTIONS.values()} == set(options)
    for name, (param, kind, low) in RUN_OPTIONS.items():
        option = options[param]
        assert name in option.opts, name
        assert (kind == "bool") == bool(option.secondary_opts), name
        assert (kind in ("flag", "bool")) == option.is_flag, name
        assert (kind == "multi") == option.multiple, name
        assert low == option.min, name
    assert typer_params(["m:app"]) == parse_run(["m:app"])


@pytest.mark.parametrize(
    "argv",
    [
        ["m:app"],
        ["m:app", "--bootstrap-servers", "h:1,h:2", "--processes", "2", "--instance-id", "w-1"],
        ["--state-dir=/tmp/s", "m:app", "--on-error", "dead-letter", "--http-port", "8080"],
        ["m:app", "--create-topics", "--partitions", "4", "--no-create-topics"],
        ["m:app", "--create-topics", "--metrics-port", "9000", "--log-level", "DEBUG"],
        ["m:app", "--commit-interval-ms", "50", "--transaction-timeout-ms=20000"],
        ["m:app", "--num-standby-replicas", "0", "--config", "a=b", "--config=c=d"],
        ["m:app", "--until-end", "--max-records", "10", "--max-seconds", "2.5"],
        ["m:app", "--max-seconds", "0", "--processes", "1", "--processes", "3"],
    ],
)
def test_a_plain_line_parses_as_typer_parses_it(
    argv: list[str], typer_params: Callable[[list[str]], dict[str, object]]
) -> None:
    assert parse_run(argv) == typer_params(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["m:app", "--help"],
        [],  # no target
        ["m:app", "other:app"],
        ["m:app", "-c", "a=b"],  # short option
        ["m:app", "--bogus"],
        ["m:app", "--processes"],  # value missing
        ["m:app", "--processes", "two"],
        ["m:app", "--processes", "-1"],
        ["m:app", "--processes", "1_000"],
        ["m:app", "--max-records", "0"],  # below its minimum
        ["m:app", "--num-standby-replicas", "-1"],
        ["m:app", "--max-seconds", "1e3"],
        ["m:app", "--state-dir", ""],
        ["m:app", "--instance-id", "--processes"],
        ["m:app", "--until-end=yes"],
        ["m:app", "--no-until-end"],
        ["m:app", "--", "x"],
    ],
)
def test_anything_else_is_left_to_typer(argv: list[str]) -> None:
    assert parse_run(argv) is None


def test_a_worker_started_from_the_command_line_loads_no_cli_framework(tmp_path: Path) -> None:
    """The run path up to the worker's start: an app that fails to load is the last step
    before the workers run (its error is the line printed), with typer never imported."""
    probe = (
        "import sys\n"
        "sys.argv = ['eokafka', 'run', 'no_such_module_here:app', '--processes', '1']\n"
        "from eokafka.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code)\n"
        "print(sorted(m for m in ('typer', 'click', 'rich', 'pydantic') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.stdout.splitlines() == ["exit 1", "[]"], out.stderr
    assert "error: 'no_such_module_here:app'" in out.stderr
