"""Run exactly-once stream processing apps on Kafka; their topics, records and the dev broker.

The typer app, built on first use; each command lives in a module of its own: ``run`` in
cli_run.py, ``describe`` in cli_describe.py, ``reset`` in cli_reset.py, ``verify`` in
cli_verify.py, ``query`` in query_cli.py, ``produce`` and ``consume`` in cli_records.py,
``broker`` in cli_broker.py and ``topics`` in cli_topics.py; exit codes in cli_common.py.
A plain ``run`` command line starts the workers without loading typer (cli_run_start.py).
"""

from __future__ import annotations

import sys
import traceback
from typing import TYPE_CHECKING, Any

from eokafka import redact, startup_gc

if TYPE_CHECKING:
    import typer

_built: list[typer.Typer] = []


def build() -> typer.Typer:
    """The typer app with every command (built once)."""
    if _built:
        return _built[0]
    import typer

    from eokafka.cli_broker import broker_cli
    from eokafka.cli_common import TYPER_STYLE
    from eokafka.cli_describe import describe
    from eokafka.cli_records import consume, produce
    from eokafka.cli_reset import reset
    from eokafka.cli_run import run
    from eokafka.cli_topics import topics_cli
    from eokafka.cli_verify import verify
    from eokafka.query_cli import query

    cli = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        help="Run exactly-once stream processing apps on Kafka; manage their topics, records "
        "and the local dev broker.",
        epilog="Exit codes: 0 done, 1 an error (one line 'error: ...' on stderr), 2 a command "
        "line it does not understand; run: 3 a bounded run stopped by a signal; verify: 1 a "
        "difference, 2 could not check; broker status: 3 no broker runs.",
        **TYPER_STYLE,
    )
    # `eokafka --help` lists the commands in this order, then the groups.
    for command in (query, run, describe, reset, verify, produce, consume):
        cli.command()(command)
    cli.add_typer(broker_cli, name="broker")
    cli.add_typer(topics_cli, name="topics")
    _built.append(cli)
    return cli


def __getattr__(name: str) -> Any:
    """``from eokafka.cli import cli``: the typer app."""
    if name == "cli":
        return build()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Run the command; a Kafka error no command caught is one line, a traceback (of a bug)
    is printed without secret values."""
    startup_gc.pause()  # a worker resumes it once built (runtime/process/supervisor.py)
    from confluent_kafka import KafkaException

    from eokafka.toolclients import kafka_error

    try:
        code = _plain_run(sys.argv[1:])
        if code is None:
            startup_gc.resume()
            code = build()()
    except KafkaException as exc:
        sys.stderr.write(redact.scrub(f"error: {kafka_error(exc, 'bootstrap_servers')}\n"))
        sys.exit(1)
    except Exception as exc:
        sys.stderr.write(redact.scrub("".join(traceback.format_exception(exc))))
        sys.exit(1)
    finally:
        startup_gc.resume()
    sys.exit(code)


def _plain_run(argv: list[str]) -> int | None:
    """``eokafka run`` with a command line cli_run_start.py parses: run it without typer
    (0 when it returns); None for every other command line."""
    if argv[:1] != ["run"]:
        return None
    from eokafka.cli_run_start import parse_run, start

    kwargs = parse_run(argv[1:])
    if kwargs is None:
        return None
    try:
        start(**kwargs)
    except (EOFError, KeyboardInterrupt):  # as click's standalone mode says it
        sys.stderr.write("\nAborted!\n")
        return 1
    return 0
