"""``eokafka run module:app``: an app's workers, until stopped or as a bounded run.

A setting's option left out is None, "not given here": the App's keyword arguments and the
``EOKAFKA_*`` environment then decide (config.py: their precedence).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from eokafka.cli_common import BootstrapOption, ConfigOption, fail, worded_option
from eokafka.config import parse_config_pairs
from eokafka.errors import EokafkaError
from eokafka.logs import setup_logging


def run(
    target: Annotated[
        str, typer.Argument(help="module:app, e.g. mymodule:app", show_default=False)
    ],
    bootstrap_servers: BootstrapOption = None,
    processes: Annotated[
        int | None, worded_option("worker processes to start on this machine", "1")
    ] = None,
    instance_id: Annotated[
        str | None,
        worded_option("this worker's stable id", "derived from the host, kept in the state dir"),
    ] = None,
    metrics_port: Annotated[
        int | None,
        worded_option("serve Prometheus /metrics on this port (+i for worker i)", "off"),
    ] = None,
    state_dir: Annotated[
        str | None,
        worded_option(
            "where the stores' files and the instance ids are kept",
            "$XDG_STATE_HOME/eokafka or ~/.local/state/eokafka",
        ),
    ] = None,
    on_error: Annotated[
        str | None,
        worded_option("a record that can't be processed: fail | skip | dead-letter", "fail"),
    ] = None,
    http_port: Annotated[
        int | None,
        worded_option("serve queries, /healthz and /readyz on this port (+i for worker i)", "off"),
    ] = None,
    create_topics: Annotated[
        bool | None,
        worded_option(
            "create missing input and output topics (see --partitions)",
            "no",
            "--create-topics/--no-create-topics",
        ),
    ] = None,
    partitions: Annotated[
        int | None,
        worded_option(
            "partitions of the topics --create-topics creates",
            "the count of the app's co-partitioned inputs that exist, else the broker's",
        ),
    ] = None,
    commit_interval_ms: Annotated[
        int | None, worded_option("commit the open transaction at least this often (ms)", "100")
    ] = None,
    transaction_timeout_ms: Annotated[
        int | None,
        worded_option(
            "the broker aborts a transaction open longer than this (ms); a crashed worker's "
            "partitions are free again after it",
            "10000",
        ),
    ] = None,
    num_standby_replicas: Annotated[
        int | None,
        worded_option("warm copies of each in-memory store on other workers", "0", min=0),
    ] = None,
    config: ConfigOption = None,
    log_level: Annotated[
        str | None, worded_option("DEBUG, INFO, WARNING or ERROR", "EOKAFKA_LOG_LEVEL, else INFO")
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
        worded_option(
            "stop after this many input records (split over --processes)", "no limit", min=1
        ),
    ] = None,
    max_seconds: Annotated[
        float | None, worded_option("commit and stop after this many seconds", "no limit", min=0.0)
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
        fail(exc)
        return
    if summary is not None:
        typer.echo(summary.text())
        if summary.reason == "interrupted":
            typer.secho("stopped by a signal before reaching its bound", err=True)
            raise typer.Exit(3)
