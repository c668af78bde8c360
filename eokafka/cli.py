"""The ``eokafka`` command: run an app, describe it, verify a sync, manage the dev broker."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from eokafka.config import parse_config_pairs
from eokafka.errors import EokafkaError
from eokafka.logs import setup_logging

# Locals in tracebacks could print credentials from the librdkafka config.
cli = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_show_locals=False
)
broker_cli = typer.Typer(no_args_is_help=True, help="The local development Kafka broker.")
cli.add_typer(broker_cli, name="broker")


def _fail(exc: BaseException) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


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
    state_dir: Annotated[str | None, typer.Option(help="where instance ids are kept")] = None,
    on_error: Annotated[str | None, typer.Option(help="fail | skip | dead-letter")] = None,
    create_topics: Annotated[
        bool | None,
        typer.Option("--create-topics/--no-create-topics", help="create missing topics"),
    ] = None,
    commit_interval_ms: Annotated[int | None, typer.Option()] = None,
    transaction_timeout_ms: Annotated[int | None, typer.Option()] = None,
    config: Annotated[
        list[str] | None,
        typer.Option("--config", "-c", help="librdkafka key=value (prefix consumer./producer.)"),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING")] = None,
) -> None:
    """Run an app's workers until SIGTERM or SIGINT."""
    from eokafka.runtime.supervisor import load_app, run_app

    setup_logging("eokafka", log_level)
    overrides: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "processes": processes,
        "instance_id": instance_id,
        "metrics_port": metrics_port,
        "state_dir": state_dir,
        "on_error": on_error,
        "create_topics": create_topics,
        "commit_interval_ms": commit_interval_ms,
        "transaction_timeout_ms": transaction_timeout_ms,
    }
    try:
        if config:
            overrides["config"] = parse_config_pairs(config, "--config")
        app = load_app(target)
        run_app(app, app.settings(overrides), target=target)
    except EokafkaError as exc:
        _fail(exc)


@cli.command()
def describe(target: Annotated[str, typer.Argument(help="module:app")]) -> None:
    """Print the app's topology and the settings in force."""
    from eokafka.runtime.supervisor import load_app

    try:
        app = load_app(target)
        typer.echo(app.topology.describe())
        typer.echo(f"settings: {app.settings()}")
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
) -> None:
    """Check that every source record is at the destination exactly once, unchanged.

    Exits 1 on any missing, duplicated, differing or extra record, or an open transaction.
    """
    import json

    from eokafka.verify import verify as run_verify

    try:
        report = run_verify(
            bootstrap_servers,
            source,
            destination,
            id_field=id_field,
            fields=[f.strip() for f in fields.split(",") if f.strip()],
            dsn=dsn,
            buckets=ranges,
            open_wait=open_wait,
        )
    except EokafkaError as exc:
        _fail(exc)
        return
    typer.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.summary())
    if not report.ok:
        raise typer.Exit(1)


@broker_cli.command("start")
def broker_start(
    port: Annotated[int, typer.Option(help="PLAINTEXT port (controller uses port+1)")] = 9092,
    home: Annotated[Path | None, typer.Option(help="broker data/log folder")] = None,
    fresh: Annotated[bool, typer.Option(help="wipe the broker's data first")] = False,
) -> None:
    """Start a single-node Apache Kafka (KRaft) on 127.0.0.1 in the background."""
    from eokafka.devbroker import BrokerError, start_broker

    try:
        info = start_broker(port=port, home=home, fresh=fresh)
    except BrokerError as exc:
        _fail(exc)
        return
    typer.echo(f"broker running (pid {info.pid})")
    typer.echo(f"bootstrap: {info.bootstrap}")
    typer.echo(f"log file:  {info.log_file}")


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
    sys.exit(cli())
