"""``eokafka verify SOURCE DESTINATION``: every source record at the destination exactly
once; --repair, --follow (the command's body: verify/command.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from eokafka.cli_common import fail
from eokafka.errors import EokafkaError


def _reach(bootstrap_servers: str) -> None:
    """Fail within seconds, in one line, when nothing answers at ``bootstrap_servers``."""
    from eokafka import toolclients
    from eokafka.config import Settings

    toolclients.reach(Settings("eokafka-cli", bootstrap_servers=bootstrap_servers))


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
        fail(exc, code=2)
        return
    if code:
        raise typer.Exit(code)
