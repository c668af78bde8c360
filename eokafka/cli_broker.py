"""``eokafka broker start|stop|status``: the local development broker (devbroker/)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from eokafka.cli_common import TYPER_STYLE, fail, worded_option

broker_cli = typer.Typer(
    no_args_is_help=True, help="The local development Kafka broker.", **TYPER_STYLE
)

_HOME = "$EOKAFKA_BROKER_HOME, else ~/.cache/eokafka/broker"


@broker_cli.command("start")
def broker_start(
    port: Annotated[
        int | None,
        worded_option(
            "client port (the controller uses port+1)",
            "the port of EOKAFKA_BOOTSTRAP_SERVERS when it names 127.0.0.1 or localhost, "
            "else 9092",
        ),
    ] = None,
    home: Annotated[Path | None, worded_option("the broker's data and log folder", _HOME)] = None,
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
        fail(exc)
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
    home: Annotated[Path | None, worded_option("the broker's data and log folder", _HOME)] = None,
) -> None:
    """Stop the local broker."""
    from eokafka.devbroker import stop_broker

    typer.echo("broker stopped" if stop_broker(home=home) else "no broker was running")


@broker_cli.command("status")
def broker_status(
    home: Annotated[Path | None, worded_option("the broker's data and log folder", _HOME)] = None,
) -> None:
    """Say whether the local broker runs, and where."""
    from eokafka.devbroker import broker_status as status

    info = status(home=home)
    state = f"running (pid {info.pid})" if info.running else "not running"
    typer.echo(f"broker {state}; bootstrap {info.bootstrap}; log {info.log_file}")
    if not info.running:
        raise typer.Exit(3)
