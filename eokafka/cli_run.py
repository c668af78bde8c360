"""``eokafka run module:app``: an app's workers, until stopped or as a bounded run.

A setting's option left out is None, "not given here": the App's keyword arguments and the
``EOKAFKA_*`` environment then decide (config.py: their precedence). This is the command as
typer shows and parses it; the work is cli_run_start.py's, which also parses plain command
lines without typer (``RUN_OPTIONS`` there names these options).
"""

from __future__ import annotations

from typing import Annotated

import typer

from eokafka.cli_common import BootstrapOption, ConfigOption, worded_option
from eokafka.cli_run_start import start


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
    start(
        target,
        bootstrap_servers=bootstrap_servers,
        processes=processes,
        instance_id=instance_id,
        metrics_port=metrics_port,
        http_port=http_port,
        state_dir=state_dir,
        on_error=on_error,
        create_topics=create_topics,
        partitions=partitions,
        commit_interval_ms=commit_interval_ms,
        transaction_timeout_ms=transaction_timeout_ms,
        num_standby_replicas=num_standby_replicas,
        config=config,
        log_level=log_level,
        until_end=until_end,
        max_records=max_records,
        max_seconds=max_seconds,
    )
