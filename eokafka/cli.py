"""The ``eokafka`` command: run an app, describe it, verify a sync, manage the dev broker."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from eokafka import redact
from eokafka.config import parse_config_pairs
from eokafka.errors import ConfigError, EokafkaError
from eokafka.logs import setup_logging

# Locals in tracebacks could print credentials from the librdkafka config.
cli = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_show_locals=False
)
from eokafka.query_cli import query  # noqa: E402  (the query command lives in its own module)

cli.command()(query)
broker_cli = typer.Typer(no_args_is_help=True, help="The local development Kafka broker.")
cli.add_typer(broker_cli, name="broker")


def _fail(exc: BaseException, code: int = 1) -> None:
    typer.secho(redact.scrub(f"error: {exc}"), fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@cli.command()
def run(
    target: Annotated[str, typer.Argument(help="module:app, e.g. mymodule:app")],
    bootstrap_servers: Annotated[str | None, typer.Option(help="host:port[,...]")] = None,
    processes: Annotated[int | None, typer.Option(help="worker processes to start")] = None,
    instance_id: Annotated[
        str | None, typer.Option(help="stable id (default: derived, kept in the state dir)")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve /metrics on this port (+i for worker i)")
    ] = None,
    http_port: Annotated[
        int | None, typer.Option(help="serve queries and health on this port (+i for worker i)")
    ] = None,
    state_dir: Annotated[str | None, typer.Option(help="where instance ids are kept")] = None,
    on_error: Annotated[str | None, typer.Option(help="fail | skip | dead-letter")] = None,
    create_topics: Annotated[
        bool | None,
        typer.Option("--create-topics/--no-create-topics", help="create missing topics"),
    ] = None,
    commit_interval_ms: Annotated[int | None, typer.Option()] = None,
    transaction_timeout_ms: Annotated[int | None, typer.Option()] = None,
    num_standby_replicas: Annotated[
        int | None,
        typer.Option(min=0, help="warm store copies per partition on other workers"),
    ] = None,
    config: Annotated[
        list[str] | None,
        typer.Option("--config", "-c", help="librdkafka key=value (prefix consumer./producer.)"),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING")] = None,
    until_end: Annotated[
        bool,
        typer.Option(
            "--until-end",
            help="process the inputs up to their end offsets at the start, commit and exit",
        ),
    ] = False,
    max_records: Annotated[
        int | None,
        typer.Option(min=1, help="stop after this many input records (split over --processes)"),
    ] = None,
    max_seconds: Annotated[
        float | None, typer.Option(min=0.0, help="commit and stop after this many seconds")
    ] = None,
) -> None:
    """Run an app's workers until SIGTERM or SIGINT, or as a bounded run that ends by itself.

    A bounded run (--until-end, --max-records, --max-seconds) exits 0 with a summary when it
    reached its bound, and 3 when a signal stopped it first.
    """
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
    target: Annotated[str, typer.Argument(help="module:app")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="text | mermaid | dot")
    ] = "text",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="write a file: .png/.svg/.pdf (needs Graphviz), .dot, .mmd"
        ),
    ] = None,
) -> None:
    """Show the app's topology (topics, processors, stores, changelogs) and its settings."""
    from eokafka.describe import render, write_picture
    from eokafka.loading import load_app
    from eokafka.topology import topology_graph

    try:
        app = load_app(target)
        settings = app.settings()
        dlq = settings.dlq_topic if settings.on_error == "dead-letter" else None
        graph = topology_graph(app.topology, app.application_id, dlq)
        if output is not None:
            write_picture(graph, output, None if format == "text" else format)
            typer.echo(f"wrote {output}")
            return
        typer.echo(render(graph, format))
        if format == "text":
            typer.echo(f"settings: {settings}")
    except EokafkaError as exc:
        _fail(exc)


@cli.command()
def reset(
    target: Annotated[str, typer.Argument(help="module:app")],
    to_earliest: Annotated[
        bool, typer.Option("--to-earliest", help="offsets to the start (default)")
    ] = False,
    to_latest: Annotated[bool, typer.Option("--to-latest", help="offsets to the end")] = False,
    to_datetime: Annotated[
        str | None, typer.Option(help="first record at/after an ISO 8601 time (UTC if no zone)")
    ] = None,
    by_duration: Annotated[
        str | None, typer.Option(help="that long before now: PT1H, P1DT2H or seconds")
    ] = None,
    delete_dead_letters: Annotated[
        bool, typer.Option("--delete-dead-letters", help="also delete <app id>-dlq")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="carry the plan out")] = False,
    wait: Annotated[
        float, typer.Option(help="seconds to wait for the group's members to go")
    ] = 0.0,
    bootstrap_servers: Annotated[str | None, typer.Option(help="host:port[,...]")] = None,
    state_dir: Annotated[str | None, typer.Option(help="the workers' state dir")] = None,
    config: Annotated[
        list[str] | None, typer.Option("--config", "-c", help="librdkafka key=value")
    ] = None,
) -> None:
    """Reprocess from scratch: move the input offsets, delete internal topics, wipe state.

    Prints the plan and changes nothing unless --yes is given. Refuses while any worker
    of the app is a member of its consumer group.
    """
    from eokafka.loading import load_app
    from eokafka.reset import (
        admin_client,
        choose_target,
        execute,
        plan_reset,
        wait_until_inactive,
    )

    overrides: dict[str, Any] = {"bootstrap_servers": bootstrap_servers, "state_dir": state_dir}
    try:
        if to_earliest and (to_latest or to_datetime or by_duration):
            raise ConfigError("--to-earliest and another target: choose one")
        if config:
            overrides["config"] = parse_config_pairs(config, "--config")
        app = load_app(target)
        settings = app.settings(overrides)
        goal = choose_target(to_latest, to_datetime, by_duration)
        admin = admin_client(settings)
        wait_until_inactive(admin, settings.application_id, wait)
        plan = plan_reset(app.topology, settings, goal, delete_dead_letters, admin)
        typer.echo(plan.describe())
        if not yes:
            typer.echo("nothing changed: run again with --yes to carry this out")
            return
        execute(plan, settings, admin)
        typer.echo("reset done: the next run reprocesses from the new offsets")
    except EokafkaError as exc:
        _fail(exc)


@cli.command()
def verify(
    source: Annotated[str, typer.Argument(help="the source Kafka topic (JSON values)")],
    destination: Annotated[
        str, typer.Argument(help="kafka:<topic>, postgres:<table> or files:<folder>")
    ],
    bootstrap_servers: Annotated[str, typer.Option(help="host:port[,...]")] = "127.0.0.1:9092",
    id_field: Annotated[
        str, typer.Option("--id", help="the field that identifies a record")
    ] = "id",
    fields: Annotated[
        str, typer.Option(help="value fields to compare too, comma separated")
    ] = "",
    dsn: Annotated[str | None, typer.Option(help="PostgreSQL connection string")] = None,
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
        typer.Option(help="the sink's consumer group: check below the offsets it committed"),
    ] = None,
    app: Annotated[
        str | None,
        typer.Option(help="module:app writing the destination: its group and sink formats"),
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
        int | None, typer.Option(help="--follow: serve Prometheus /metrics on this port")
    ] = None,
    fail_after: Annotated[
        int, typer.Option(min=0, help="--follow: exit 1 after this many failing checks in a row")
    ] = 0,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="a progress bar (default: on a terminal)"),
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
        code = run_verify(command, typer.echo)
    except EokafkaError as exc:
        _fail(exc, code=2)
        return
    if code:
        raise typer.Exit(code)


@broker_cli.command("start")
def broker_start(
    port: Annotated[int, typer.Option(help="client port (controller uses port+1)")] = 9092,
    home: Annotated[Path | None, typer.Option(help="broker data/log folder")] = None,
    fresh: Annotated[bool, typer.Option(help="wipe the broker's data first")] = False,
    security: Annotated[
        str,
        typer.Option(help="plaintext, or sasl-ssl: SCRAM-SHA-512 users and TLS (own CA)"),
    ] = "plaintext",
) -> None:
    """Start a single-node Apache Kafka (KRaft) on 127.0.0.1 in the background."""
    from eokafka.devbroker import BrokerError, start_broker

    try:
        info = start_broker(port=port, home=home, fresh=fresh, security=security)
    except BrokerError as exc:
        _fail(exc)
        return
    typer.echo(f"broker running (pid {info.pid})")
    typer.echo(f"bootstrap: {info.bootstrap}")
    typer.echo(f"log file:  {info.log_file}")
    if info.client_properties is not None:
        _echo_client_settings(info.client_config, info.client_properties)


def _echo_client_settings(config: Any, path: Path) -> None:
    """Where a secured broker's client settings are, without printing the password."""
    typer.echo(f"security:  SASL_SSL, {config['sasl.mechanism']}, user {config['sasl.username']}")
    typer.echo(f"client settings (with the password): {path}")
    typer.echo(
        f'  e.g. EOKAFKA_CONFIG="$(grep -v \'^#\' {path} | paste -sd\';\')" '
        "eokafka run mymodule:app"
    )


@broker_cli.command("stop")
def broker_stop(home: Annotated[Path | None, typer.Option()] = None) -> None:
    """Stop the local broker."""
    from eokafka.devbroker import stop_broker

    typer.echo("broker stopped" if stop_broker(home=home) else "no broker was running")


@broker_cli.command("status")
def broker_status(home: Annotated[Path | None, typer.Option()] = None) -> None:
    """Say whether the local broker runs, and where."""
    from eokafka.devbroker import broker_status as status

    info = status(home=home)
    state = f"running (pid {info.pid})" if info.running else "not running"
    typer.echo(f"broker {state}; bootstrap {info.bootstrap}; log {info.log_file}")
    if not info.running:
        raise typer.Exit(3)


def main() -> None:
    """Run the command; a traceback, if any, is printed without secret values."""
    try:
        code = cli()
    except Exception as exc:
        sys.stderr.write(redact.scrub("".join(traceback.format_exception(exc))))
        sys.exit(1)
    sys.exit(code)
