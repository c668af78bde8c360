"""Run exactly-once stream processing apps on Kafka; their topics, records and the dev broker.

``eokafka topics``, ``produce`` and ``consume`` live in cli_topics.py and cli_records.py;
exit codes in cli_common.py.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from eokafka import redact
from eokafka.cli_common import TYPER_STYLE, BootstrapOption, ConfigOption, command_errors
from eokafka.cli_common import fail as _fail
from eokafka.cli_records import consume, produce
from eokafka.cli_topics import topics_cli
from eokafka.config import parse_config_pairs
from eokafka.errors import ConfigError, EokafkaError
from eokafka.logs import setup_logging

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
broker_cli = typer.Typer(
    no_args_is_help=True, help="The local development Kafka broker.", **TYPER_STYLE
)
from eokafka.query_cli import query  # noqa: E402  (the query command lives in its own module)

cli.command()(query)
cli.add_typer(broker_cli, name="broker")


def _reach(bootstrap_servers: str) -> None:
    """Fail within seconds, in one line, when nothing answers at ``bootstrap_servers``."""
    from eokafka import toolclients
    from eokafka.config import Settings

    toolclients.reach(Settings("eokafka-cli", bootstrap_servers=bootstrap_servers))


_HOME = "$EOKAFKA_BROKER_HOME, else ~/.cache/eokafka/broker"


def _setting(help: str, default: str, *names: str, **limits: float) -> Any:
    """An option for a setting that the App, the environment or the command line may give;
    its default is said in words, as None stands for "not given here"."""
    return typer.Option(*names, help=f"{help} [default: {default}]", show_default=False, **limits)


@cli.command()
def run(
    target: Annotated[
        str, typer.Argument(help="module:app, e.g. mymodule:app", show_default=False)
    ],
    bootstrap_servers: BootstrapOption = None,
    processes: Annotated[
        int | None, _setting("worker processes to start on this machine", "1")
    ] = None,
    instance_id: Annotated[
        str | None,
        _setting("this worker's stable id", "derived from the host, kept in the state dir"),
    ] = None,
    metrics_port: Annotated[
        int | None,
        _setting("serve Prometheus /metrics on this port (+i for worker i)", "off"),
    ] = None,
    state_dir: Annotated[
        str | None,
        _setting(
            "where the stores' files and the instance ids are kept",
            "$XDG_STATE_HOME/eokafka or ~/.local/state/eokafka",
        ),
    ] = None,
    on_error: Annotated[
        str | None, _setting("a record that can't be processed: fail | skip | dead-letter", "fail")
    ] = None,
    http_port: Annotated[
        int | None,
        _setting("serve queries, /healthz and /readyz on this port (+i for worker i)", "off"),
    ] = None,
    create_topics: Annotated[
        bool | None,
        _setting(
            "create missing input and output topics (see --partitions)",
            "no",
            "--create-topics/--no-create-topics",
        ),
    ] = None,
    partitions: Annotated[
        int | None,
        _setting(
            "partitions of the topics --create-topics creates",
            "the count of the app's co-partitioned inputs that exist, else the broker's",
        ),
    ] = None,
    commit_interval_ms: Annotated[
        int | None, _setting("commit the open transaction at least this often (ms)", "100")
    ] = None,
    transaction_timeout_ms: Annotated[
        int | None,
        _setting(
            "the broker aborts a transaction open longer than this (ms); a crashed worker's "
            "partitions are free again after it",
            "10000",
        ),
    ] = None,
    num_standby_replicas: Annotated[
        int | None, _setting("warm copies of each in-memory store on other workers", "0", min=0)
    ] = None,
    config: ConfigOption = None,
    log_level: Annotated[
        str | None, _setting("DEBUG, INFO, WARNING or ERROR", "EOKAFKA_LOG_LEVEL, else INFO")
    ] = None,
    until_end: Annotated[
        bool,
        typer.Option(
            "--until-end",
            help="process the inputs up to their end offsets at the start, commit and exit",
        ),
    ] = False,
    max_records: Annotated[
        int | None,
        _setting(
            "stop after this many input records (split over --processes)", "no limit", min=1
        ),
    ] = None,
    max_seconds: Annotated[
        float | None, _setting("commit and stop after this many seconds", "no limit", min=0.0)
    ] = None,
) -> None:
    """Run an app's workers, until stopped or as a bounded run.

    The workers run until SIGTERM or SIGINT. A bounded run (--until-end, --max-records,
    --max-seconds) ends by itself: it exits 0 with a summary when it reached its bound, and
    3 when a signal stopped it first.
    """
    from eokafka import toolclients
    from eokafka.loading import load_app, load_topology
    from eokafka.runtime.process.bounded import capture
    from eokafka.runtime.process.supervisor import run_app

    setup_logging("eokafka", log_level)
    overrides: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "processes": processes,
        "instance_id": instance_id,
        "metrics_port": metrics_port,
        "http_port": http_port,
        "state_dir": state_dir,
        "on_error": on_error,
        "create_topics": create_topics,
        "partitions": partitions,
        "commit_interval_ms": commit_interval_ms,
        "transaction_timeout_ms": transaction_timeout_ms,
        "num_standby_replicas": num_standby_replicas,
    }
    try:
        if config:
            overrides["config"] = parse_config_pairs(config, "--config")
        app = load_app(target)
        settings = app.settings(overrides)
        bounds = None
        if until_end or max_records is not None or max_seconds is not None:
            toolclients.reach(settings)  # capture reads offsets: first a bounded first contact
            bounds = capture(settings, app.topology, until_end, max_records, max_seconds)
        summary = run_app(
            app.topology, settings, target=target, load=load_topology, bounds=bounds
        )
    except EokafkaError as exc:
        _fail(exc)
        return
    if summary is not None:
        typer.echo(summary.text())
        if summary.reason == "interrupted":
            typer.secho("stopped by a signal before reaching its bound", err=True)
            raise typer.Exit(3)


@cli.command()
def describe(
    target: Annotated[str, typer.Argument(help="module:app", show_default=False)],
    format: Annotated[
        str, typer.Option("--format", "-f", help="text | mermaid | dot")
    ] = "text",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="write a file: .png/.svg/.pdf (needs Graphviz), .dot, .mmd [default: print]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show an app's topology and its settings.

    The topics, processors, stores and changelogs, as text, Mermaid or Graphviz dot.
    """
    from eokafka.describe import render, write_picture
    from eokafka.loading import load_app
    from eokafka.on_error import shown
    from eokafka.topology import topology_graph

    try:
        app = load_app(target)
        settings = app.settings()
        dlq = settings.dlq_topic if app.topology.may_dead_letter(settings.on_error) else None
        graph = topology_graph(app.topology, app.application_id, dlq)
        if output is not None:
            write_picture(graph, output, None if format == "text" else format)
            typer.echo(f"wrote {output}")
            return
        typer.echo(render(graph, format))
        if format == "text":
            typer.echo(f"settings: {settings}")
            policies = app.topology.error_policies(settings.on_error)
            if any(p != settings.on_error for p in policies.values()):
                each = ", ".join(f"{topic}: {shown(p)}" for topic, p in policies.items())
                typer.echo(f"on_error: {each}")
    except EokafkaError as exc:
        _fail(exc)


@cli.command()
def reset(
    target: Annotated[str, typer.Argument(help="module:app", show_default=False)],
    to_earliest: Annotated[
        bool,
        typer.Option(
            "--to-earliest", help="input offsets to the start [default]", show_default=False
        ),
    ] = False,
    to_latest: Annotated[
        bool, typer.Option("--to-latest", help="input offsets to the end")
    ] = False,
    to_datetime: Annotated[
        str | None,
        typer.Option(
            help="input offsets to the first record at/after an ISO 8601 time (UTC if no "
            "zone) [default: --to-earliest]",
            show_default=False,
        ),
    ] = None,
    by_duration: Annotated[
        str | None,
        typer.Option(
            help="input offsets that long before now: PT1H, P1DT2H or seconds [default: "
            "--to-earliest]",
            show_default=False,
        ),
    ] = None,
    delete_dead_letters: Annotated[
        bool, typer.Option("--delete-dead-letters", help="also delete <app id>-dlq")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="carry the plan out")] = False,
    wait: Annotated[
        float, typer.Option(help="seconds to wait for the group's members to go")
    ] = 0.0,
    bootstrap_servers: BootstrapOption = None,
    state_dir: Annotated[
        str | None,
        _setting("the workers' state dir", "$XDG_STATE_HOME/eokafka or ~/.local/state/eokafka"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Reprocess from scratch: offsets, internal topics, local state.

    Moves the input offsets, deletes the app's internal topics and wipes its state. Prints
    the plan and changes nothing unless --yes is given. Refuses while any worker of the app
    is a member of its consumer group.
    """
    from eokafka import toolclients
    from eokafka.cli_common import command_settings
    from eokafka.logs import setup_command_logging
    from eokafka.reset import (
        admin_client,
        choose_target,
        execute,
        plan_reset,
        wait_until_inactive,
    )

    setup_command_logging()
    with command_errors(bootstrap_servers or ""):
        if to_earliest and (to_latest or to_datetime or by_duration):
            raise ConfigError("--to-earliest and another target: choose one")
        settings, app = command_settings(target, bootstrap_servers, config, state_dir=state_dir)
        assert app is not None
        goal = choose_target(to_latest, to_datetime, by_duration)
        toolclients.reach(settings)
        admin = admin_client(settings)
        wait_until_inactive(admin, settings.application_id, wait)
        plan = plan_reset(app.topology, settings, goal, delete_dead_letters, admin)
        typer.echo(plan.describe())
        if not yes:
            typer.echo("nothing changed: run again with --yes to carry this out")
            return
        execute(plan, settings, admin)
        typer.echo("reset done: the next run reprocesses from the new offsets")


@cli.command()
def verify(
    source: Annotated[str, typer.Argument(help="the source Kafka topic (JSON values)")],
    destination: Annotated[
        str, typer.Argument(help="kafka:<topic>, postgres:<table> or files:<folder>")
    ],
    bootstrap_servers: Annotated[
        str,
        typer.Option(
            help="the cluster, host:port[,...]", envvar="EOKAFKA_BOOTSTRAP_SERVERS",
            show_envvar=False,
        ),
    ] = "127.0.0.1:9092",
    id_field: Annotated[
        str, typer.Option("--id", help="the field that identifies a record")
    ] = "id",
    fields: Annotated[
        str,
        typer.Option(
            help="value fields to compare too, comma separated [default: the id only]",
            show_default=False,
        ),
    ] = "",
    dsn: Annotated[
        str | None,
        typer.Option(help="PostgreSQL connection string [default: none; postgres: needs it]"),
    ] = None,
    ranges: Annotated[int, typer.Option(help="key ranges with a count and checksum")] = 16,
    open_wait: Annotated[
        float, typer.Option(help="seconds an open transaction may take to end")
    ] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="a JSON report for scripts")] = False,
    allow_unkeyed: Annotated[
        bool,
        typer.Option(
            "--allow-unkeyed",
            help="accept records without a readable id (still counted and named)",
        ),
    ] = False,
    group: Annotated[
        str | None,
        typer.Option(
            help="the sink's consumer group: check below the offsets it committed "
            "[default: every record]"
        ),
    ] = None,
    app: Annotated[
        str | None,
        typer.Option(
            help="module:app writing the destination: its group and sink formats "
            "[default: none]"
        ),
    ] = None,
    prepared_wait: Annotated[
        float, typer.Option(help="seconds to wait for the sink's prepared transactions")
    ] = 30.0,
    repair: Annotated[
        bool, typer.Option("--repair", help="plan the changes that make the check pass")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="carry the repair plan out")] = False,
    delete_extra: Annotated[
        bool, typer.Option("--delete-extra", help="repair: remove records not in the source")
    ] = False,
    delete_unkeyed: Annotated[
        bool,
        typer.Option("--delete-unkeyed", help="repair: remove destination records without an id"),
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="keep checking every --interval seconds")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, help="--follow: seconds between checks")
    ] = 10.0,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="--follow: serve Prometheus /metrics on this port [default: off]"),
    ] = None,
    fail_after: Annotated[
        int, typer.Option(min=0, help="--follow: exit 1 after this many failing checks in a row")
    ] = 0,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="a progress bar [default: on a terminal]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check that every source record is at the destination exactly once, unchanged.

    --repair shows the changes that make the check pass; --repair --yes makes
    them. --follow keeps checking a running sync. With --group (or --app), only
    records below the sink's committed offsets are checked or repaired, so the
    sink may keep running.

    Exit code 0: all checked (after a repair: nothing left to fail on). 1: a
    missing, duplicated, differing or extra record, an id repeated in the
    source, a record without a readable id on either side (unless
    --allow-unkeyed), or an open transaction. 2: the check could not run.
    """
    from eokafka.verify import CheckOptions
    from eokafka.verify.command import VerifyCommand
    from eokafka.verify.command import run as run_verify
    from eokafka.verify.follow import FollowOptions

    command = VerifyCommand(
        CheckOptions(
            bootstrap_servers, source, destination, id_field,
            tuple(f.strip() for f in fields.split(",") if f.strip()), dsn, ranges, open_wait,
            allow_unkeyed, group, prepared_wait,
        ),
        as_json, app, repair, yes, delete_extra, delete_unkeyed,
        FollowOptions(interval, metrics_port, fail_after=fail_after) if follow else None,
        progress,
    )
    try:
        _reach(bootstrap_servers)
        code = run_verify(command, typer.echo)
    except EokafkaError as exc:
        _fail(exc, code=2)
        return
    if code:
        raise typer.Exit(code)


@broker_cli.command("start")
def broker_start(
    port: Annotated[
        int | None,
        _setting(
            "client port (the controller uses port+1)",
            "the port of EOKAFKA_BOOTSTRAP_SERVERS when it names 127.0.0.1 or localhost, "
            "else 9092",
        ),
    ] = None,
    home: Annotated[Path | None, _setting("the broker's data and log folder", _HOME)] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="wipe the broker's data first")
    ] = False,
    security: Annotated[
        str,
        typer.Option(help="plaintext, or sasl-ssl: SCRAM-SHA-512 users and TLS (own CA)"),
    ] = "plaintext",
) -> None:
    """Start a single-node Apache Kafka (KRaft) on 127.0.0.1 in the background."""
    from eokafka.devbroker import BrokerError, start_broker

    try:
        port = port if port is not None else _local_port()
        info = start_broker(port=port, home=home, fresh=fresh, security=security)
    except BrokerError as exc:
        _fail(exc)
        return
    typer.echo(f"broker running (pid {info.pid})")
    typer.echo(f"bootstrap: {info.bootstrap}")
    typer.echo(f"log file:  {info.log_file}")
    if info.client_properties is not None:
        _echo_client_settings(info.client_config, info.client_properties)


def _local_port() -> int:
    """The port of ``EOKAFKA_BOOTSTRAP_SERVERS`` if it names this machine, else 9092: the
    broker starts where the other commands will look for it."""
    host, _, port = os.environ.get("EOKAFKA_BOOTSTRAP_SERVERS", "").split(",")[0].rpartition(":")
    if host in ("127.0.0.1", "localhost") and port.isdigit():
        return int(port)
    return 9092


def _echo_client_settings(config: Any, path: Path) -> None:
    """Where a secured broker's client settings are, without printing the password."""
    typer.echo(f"security:  SASL_SSL, {config['sasl.mechanism']}, user {config['sasl.username']}")
    typer.echo(f"client settings (with the password): {path}")
    typer.echo(
        f'  e.g. EOKAFKA_CONFIG="$(grep -v \'^#\' {path} | paste -sd\';\')" '
        "eokafka run mymodule:app"
    )


@broker_cli.command("stop")
def broker_stop(
    home: Annotated[Path | None, _setting("the broker's data and log folder", _HOME)] = None,
) -> None:
    """Stop the local broker."""
    from eokafka.devbroker import stop_broker

    typer.echo("broker stopped" if stop_broker(home=home) else "no broker was running")


@broker_cli.command("status")
def broker_status(
    home: Annotated[Path | None, _setting("the broker's data and log folder", _HOME)] = None,
) -> None:
    """Say whether the local broker runs, and where."""
    from eokafka.devbroker import broker_status as status

    info = status(home=home)
    state = f"running (pid {info.pid})" if info.running else "not running"
    typer.echo(f"broker {state}; bootstrap {info.bootstrap}; log {info.log_file}")
    if not info.running:
        raise typer.Exit(3)


cli.add_typer(topics_cli, name="topics")
cli.command()(produce)
cli.command()(consume)


def main() -> None:
    """Run the command; a Kafka error no command caught is one line, a traceback (of a bug)
    is printed without secret values."""
    from confluent_kafka import KafkaException

    from eokafka.toolclients import kafka_error

    try:
        code = cli()
    except KafkaException as exc:
        sys.stderr.write(redact.scrub(f"error: {kafka_error(exc, 'bootstrap_servers')}\n"))
        sys.exit(1)
    except Exception as exc:
        sys.stderr.write(redact.scrub("".join(traceback.format_exception(exc))))
        sys.exit(1)
    sys.exit(code)
