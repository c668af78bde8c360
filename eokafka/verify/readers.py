"""The sides ``eokafka verify`` compares: a Kafka topic, a PostgreSQL table, a folder of files."""

from __future__ import annotations

import csv
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from eokafka.errors import ConfigError
from eokafka.verify.records import CsvText, Read, Side, from_json, from_mapping

_TIMEOUT = 30.0
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


def _end_offsets(admin: AdminClient, topic: str, level: IsolationLevel) -> dict[int, int]:
    meta = admin.list_topics(topic=topic, timeout=_TIMEOUT).topics.get(topic)
    if meta is None or meta.error is not None:
        raise ConfigError(f"Kafka topic {topic!r} does not exist")
    request = {TopicPartition(topic, p): OffsetSpec.latest() for p in meta.partitions}
    futures = admin.list_offsets(request, isolation_level=level, request_timeout=_TIMEOUT)
    return {tp.partition: f.result(_TIMEOUT).offset for tp, f in futures.items()}


def open_transactions(bootstrap: str, topic: str, wait: float) -> list[dict[str, Any]]:
    """Partitions whose last stable offset stays below the high watermark for ``wait`` s.

    An open transaction holds the last stable offset back; one that does not end within
    the transaction timeout is hanging, and read_committed consumers are stuck behind it.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + wait
    while True:
        stable = _end_offsets(admin, topic, IsolationLevel.READ_COMMITTED)
        high = _end_offsets(admin, topic, IsolationLevel.READ_UNCOMMITTED)
        behind = [
            {"topic": topic, "partition": p, "last_stable_offset": stable[p],
             "high_watermark": high[p]}
            for p in sorted(high)
            if stable[p] < high[p]
        ]
        if not behind or time.monotonic() >= deadline:
            return behind
        time.sleep(0.5)  # an in-flight transaction may still commit or abort


def kafka_side(bootstrap: str, topic: str, id_field: str, fields: Sequence[str]) -> Side:
    """JSON values of ``topic`` as a read_committed consumer sees them, up to the LSO."""
    return Side(
        f"kafka:{topic}",
        _kafka_reads(bootstrap, topic, id_field, fields),
        lambda loc: f"{topic}[{loc[0]}]@{loc[1]}",
    )


def _kafka_reads(
    bootstrap: str, topic: str, id_field: str, fields: Sequence[str]
) -> Iterator[Read]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    target = _end_offsets(admin, topic, IsolationLevel.READ_COMMITTED)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"eokafka-verify-{uuid.uuid4().hex[:8]}",  # assign only, never commits
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    position = dict.fromkeys(target, 0)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in target])
    try:
        while any(position[p] < target[p] for p in target):
            for msg in consumer.consume(1000, 1.0):
                err = msg.error()
                p = msg.partition()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(err)
                    position[p] = max(position[p], msg.offset())
                    continue
                position[p] = msg.offset() + 1
                if msg.offset() < target[p]:
                    yield from_json((p, msg.offset()), msg.value(), id_field, fields)
    finally:
        consumer.close()


def postgres_side(dsn: str, table: str, id_field: str, fields: Sequence[str]) -> Side:
    """Rows of ``table`` (``schema.table`` allowed), streamed by a server-side cursor;
    a row is named by its number in the order of the scan."""
    return Side(
        f"postgres:{table}",
        _postgres_reads(dsn, table, id_field, fields),
        lambda loc: f"{table} row {loc[1]}",
    )


def _postgres_reads(
    dsn: str, table: str, id_field: str, fields: Sequence[str]
) -> Iterator[Read]:
    try:
        import psycopg
        from psycopg import sql
    except ImportError as exc:
        raise ConfigError("verifying a PostgreSQL table needs psycopg: pip install "
                          "'eokafka[postgres]'") from exc
    cols = [id_field, *fields]
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, cols)), sql.Identifier(*table.split("."))
    )
    with psycopg.connect(dsn) as conn:
        try:
            with conn.cursor(name="eokafka_verify") as cur:
                cur.execute(query)
                for n, row in enumerate(cur, 1):
                    yield from_mapping((0, n), dict(zip(cols, row, strict=True)), id_field, fields)
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
            raise ConfigError(f"PostgreSQL: {exc}".strip()) from exc


def files_side(directory: str, id_field: str, fields: Sequence[str]) -> Side:
    """Records of the finished ``*.jsonl`` and ``*.csv`` files in ``directory`` (not hidden),
    each named by its file and line."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"folder {directory!r} does not exist")
    paths = [
        p for p in sorted(folder.iterdir())
        if not p.name.startswith(".") and p.is_file() and p.suffix in (".jsonl", ".csv")
    ]
    return Side(
        f"files:{directory}",
        _file_reads(paths, id_field, fields),
        lambda loc: f"{paths[loc[0]]}:{loc[1]}",
    )


def _file_reads(paths: list[Path], id_field: str, fields: Sequence[str]) -> Iterator[Read]:
    for i, path in enumerate(paths):
        if path.suffix == ".jsonl":
            with open(path, "rb") as f:
                for line_no, line in enumerate(f, 1):
                    if line.strip():
                        yield from_json((i, line_no), line, id_field, fields)
        else:
            yield from _csv_reads(i, path, id_field, fields)


def _csv_reads(i: int, path: Path, id_field: str, fields: Sequence[str]) -> Iterator[Read]:
    """CSV rows with a header; a row that can't be read whole is named, not guessed at."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        for row in reader:
            loc = (i, reader.line_num)
            if not row:
                continue
            if any(_UNDECODABLE.search(cell) for cell in row):
                yield Read(loc, None, problem="not UTF-8")
            elif len(row) != len(header):
                yield Read(loc, None, problem=f"{len(row)} fields, the header has {len(header)}")
            else:
                record = dict(zip(header, map(CsvText, row), strict=True))
                yield from_mapping(loc, record, id_field, fields)
