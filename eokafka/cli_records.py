"""``eokafka produce`` and ``eokafka consume``: records in and out of a topic as JSON lines."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from eokafka.cli_common import BootstrapOption, ConfigOption, command_errors, command_settings

if TYPE_CHECKING:
    from eokafka.app import App
    from eokafka.records_io import Codec

AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="module:app: connect with the app's settings, partition as its producers, and "
        "--key-serde/--value-serde app use the serdes it reads the topic with [default: "
        "eokafka's own settings]",
        show_default=False,
    ),
]
SERDES = "json | string | base64 | app"


def _codecs(app: App | None, topic: str, key_serde: str, value_serde: str) -> tuple[Codec, Codec]:
    from eokafka.records_io import codec

    source = None
    if app is not None:
        source = next((s for s in app.topology.sources if s.topic == topic), None)
    return (
        codec(key_serde, source.key_serde if source else None),
        codec(value_serde, source.value_serde if source else None),
    )


def produce(
    topic: Annotated[str, typer.Argument(help="the topic to write to", show_default=False)],
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="read the JSON lines from this file [default: stdin]",
            show_default=False, exists=True, dir_okay=False, readable=True,
        ),
    ] = None,
    key_serde: Annotated[str, typer.Option(help=f"how keys become bytes: {SERDES}")] = "string",
    value_serde: Annotated[str, typer.Option(help=f"how values become bytes: {SERDES}")] = "json",
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header", "-H", help="name=value added to every record, repeatable [default: none]",
            show_default=False,
        ),
    ] = None,
    partition: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="write every record to this partition [default: a line's \"partition\", else "
            "where the partitioner puts its key: murmur2 as the Java client, or the app's "
            "partitioner setting]",
            show_default=False,
        ),
    ] = None,
    app_target: AppOption = None,
    bootstrap_servers: BootstrapOption = None,
    config: ConfigOption = None,
) -> None:
    """Write records to a topic from JSON lines.

    One line per record: {"key": ..., "value": ..., "headers": {...}, "partition": n,
    "timestamp": ms}, only "value" required; null is a tombstone. Every line is read and
    checked before any record is sent, so a bad line sends nothing.
    """
    from eokafka import toolclients
    from eokafka.logs import setup_command_logging
    from eokafka.records_io import parse_headers, parse_lines
    from eokafka.topic_admin import require
    from eokafka.topic_io import produce as send

    setup_command_logging()
    with command_errors(bootstrap_servers or ""):
        settings, app = command_settings(app_target, bootstrap_servers, config)
        codecs = _codecs(app, topic, key_serde, value_serde)
        extra = parse_headers(header or [])
        text = file.read_text() if file is not None else sys.stdin.read()
        source = str(file) if file is not None else "stdin"
        records = list(parse_lines(text.splitlines(), *codecs, source, extra))
        toolclients.reach(settings)
        count = require(toolclients.admin(settings), topic)
        placed = send(toolclients.producer(settings), topic, count, records, partition, source)
    if len(placed) == 1:
        typer.echo(f"wrote 1 record to {topic}[{placed[0][0]}]@{placed[0][1]}")
    else:
        used = ", ".join(str(p) for p in sorted({p for p, _ in placed}))
        typer.echo(f"wrote {len(placed)} records to {topic} (partitions {used or 'none'})")


def consume(
    topic: Annotated[str, typer.Argument(help="the topic to read", show_default=False)],
    start: Annotated[
        str,
        typer.Option(
            "--from",
            help="where to start in each partition: beginning, end (new records only), an "
            "offset, or an ISO 8601 time such as 2026-05-01T12:00:00Z (the first record at "
            "or after it)",
        ),
    ] = "beginning",
    until_end: Annotated[
        bool,
        typer.Option(
            "--until-end",
            help="stop at the end offsets seen at the start [default: follow new records "
            "until Ctrl-C]",
            show_default=False,
        ),
    ] = False,
    max_records: Annotated[
        int | None,
        typer.Option(
            "--max", min=1, help="stop after this many records [default: no limit]",
            show_default=False,
        ),
    ] = None,
    partition: Annotated[
        int | None,
        typer.Option(min=0, help="read this partition only [default: all]", show_default=False),
    ] = None,
    key_serde: Annotated[str, typer.Option(help=f"how keys are shown: {SERDES}")] = "string",
    value_serde: Annotated[str, typer.Option(help=f"how values are shown: {SERDES}")] = "json",
    read_uncommitted: Annotated[
        bool,
        typer.Option(
            "--read-uncommitted",
            help="also records of open and aborted transactions [default: read_committed]",
            show_default=False,
        ),
    ] = False,
    app_target: AppOption = None,
    bootstrap_servers: BootstrapOption = None,
    config: ConfigOption = None,
) -> None:
    """Print a topic's records as JSON lines.

    One line per record: {"key": ..., "value": ..., "partition": n, "offset": n,
    "timestamp": ms, "headers": {...}}. Reads read_committed, as an app's workers do, so
    only records of committed transactions show. Lines can be fed back to eokafka produce.
    """
    from eokafka import toolclients, topic_io
    from eokafka.logs import setup_command_logging
    from eokafka.records_io import record_line
    from eokafka.topic_admin import TopicError, require

    setup_command_logging()
    shown = 0
    with command_errors(bootstrap_servers or ""):
        settings, app = command_settings(app_target, bootstrap_servers, config)
        codecs = _codecs(app, topic, key_serde, value_serde)
        where = topic_io.parse_start(start)
        toolclients.reach(settings)
        admin = toolclients.admin(settings)
        count = require(admin, topic)
        if partition is not None and partition >= count:
            raise TopicError(f"topic {topic!r} has partitions 0..{count - 1}, not {partition}")
        partitions = [partition] if partition is not None else list(range(count))
        committed = not read_uncommitted
        consumer = toolclients.consumer(settings, committed, wait_ms=10 if until_end else 500)
        try:
            offsets = topic_io.start_offsets(consumer, topic, partitions, where)
            ends = topic_io.end_offsets(admin, topic, partitions, committed) if until_end else None
            for msg in topic_io.read(consumer, topic, offsets, ends):
                line = record_line(
                    msg.key(), msg.value(), msg.headers(), msg.partition(), msg.offset(),
                    msg.timestamp()[1], codecs,
                    f"{topic}[{msg.partition()}]@{msg.offset()}",
                )  # fmt: skip
                print(line, flush=True)
                shown += 1
                if max_records is not None and shown >= max_records:
                    break
        except KeyboardInterrupt:
            pass  # Ctrl-C ends a follow: what was printed is the output
        except BrokenPipeError:  # the reader went away (| head): done, and quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        finally:
            consumer.close()
