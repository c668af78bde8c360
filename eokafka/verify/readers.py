"""The sides ``eokafka verify`` compares: a Kafka topic, a PostgreSQL table, a folder of files.

Each side fixes what it will read when it is made (a topic's end offsets, a table's
snapshot, a folder's listing), not when its records are first read: the caller decides the
order of those moments (see ``eokafka.verify.check``).
"""

from __future__ import annotations

import csv
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
from confluent_kafka.admin import AdminClient, ConfigResource, OffsetSpec, ResourceType

from eokafka.errors import ConfigError
from eokafka.verify.records import CsvText, Loc, Read, Side, from_json, from_mapping

_TIMEOUT = 30.0
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


def client_config(bootstrap: str) -> dict[str, Any]:
    """The settings of verify's own Kafka clients: quiet unless something is wrong."""
    return {"bootstrap.servers": bootstrap, "log_level": 4}


def _offsets(
    admin: AdminClient, topic: str, spec: OffsetSpec, level: IsolationLevel
) -> dict[int, int]:
    meta = admin.list_topics(topic=topic, timeout=_TIMEOUT).topics.get(topic)
    if meta is None or meta.error is not None:
        raise ConfigError(f"Kafka topic {topic!r} does not exist")
    request = {TopicPartition(topic, p): spec for p in meta.partitions}
    futures = admin.list_offsets(request, isolation_level=level, request_timeout=_TIMEOUT)
    return {tp.partition: f.result(_TIMEOUT).offset for tp, f in futures.items()}


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The last stable offset of each partition: where a read_committed reader ends."""
    admin = AdminClient(client_config(bootstrap))
    return _offsets(admin, topic, OffsetSpec.latest(), IsolationLevel.READ_COMMITTED)


def open_transactions(bootstrap: str, topic: str, wait: float) -> list[dict[str, Any]]:
    """Partitions where a transaction open now is still open ``wait`` seconds later."""
    return settled_ends(bootstrap, topic, wait)[1]


def settled_ends(
    bootstrap: str, topic: str, wait: float
) -> tuple[dict[int, int], list[dict[str, Any]]]:
    """Offsets up to which every record is decided: the high watermarks now, once the
    transactions open now have ended; and the partitions where one is still open after
    ``wait`` seconds (there, the last stable offset).

    An open transaction holds the last stable offset back, hiding records that later
    transactions committed after it; one that does not end within the transaction timeout
    is hanging, and read_committed consumers are stuck behind it. A running producer opens
    new transactions all the time, so only those already open at the first look count.
    """
    admin = AdminClient(client_config(bootstrap))
    deadline = time.monotonic() + wait
    high = _offsets(admin, topic, OffsetSpec.latest(), IsolationLevel.READ_UNCOMMITTED)
    while True:
        stable = _offsets(admin, topic, OffsetSpec.latest(), IsolationLevel.READ_COMMITTED)
        behind = [
            {"topic": topic, "partition": p, "last_stable_offset": stable.get(p, 0),
             "high_watermark": high[p]}
            for p in sorted(high)
            if stable.get(p, 0) < high[p]
        ]
        if not behind or time.monotonic() >= deadline:
            return {p: min(high[p], stable.get(p, 0)) for p in high}, behind
        time.sleep(0.2)  # an in-flight transaction may still commit or abort


def is_compacted(bootstrap: str, topic: str) -> bool:
    """Whether ``topic``'s cleanup.policy compacts it (then it is read as a table)."""
    admin = AdminClient(client_config(bootstrap))
    resource = ConfigResource(ResourceType.TOPIC, topic)
    try:
        configs = admin.describe_configs([resource], request_timeout=_TIMEOUT)[resource]
        policy = configs.result(_TIMEOUT)["cleanup.policy"].value or ""
    except KafkaException as exc:
        raise ConfigError(f"Kafka topic {topic!r}: {exc.args[0]}") from exc
    return "compact" in policy.split(",")


def kafka_side(
    bootstrap: str,
    topic: str,
    id_field: str,
    fields: Sequence[str],
    as_table: bool = False,
    target: Mapping[int, int] | None = None,
) -> Side:
    """JSON values of ``topic`` as a read_committed consumer sees them, up to ``target`` or
    else the last stable offsets now (fixed here, not when the reads start).

    ``as_table``: a compacted topic as its readers see it, the last record of each key (a
    tombstone deletes its key), named by that record's place.
    """
    admin = AdminClient(client_config(bootstrap))
    if target is None:
        target = _offsets(admin, topic, OffsetSpec.latest(), IsolationLevel.READ_COMMITTED)
    low = _offsets(admin, topic, OffsetSpec.earliest(), IsolationLevel.READ_COMMITTED)
    records = kafka_records(bootstrap, topic, dict.fromkeys(target, 0), target)
    reads = (
        _table_reads(records, id_field, fields)
        if as_table
        else (from_json((m.partition, m.offset), m.value, id_field, fields) for m in records)
    )
    return Side(
        f"kafka:{topic}",
        reads,
        lambda loc: f"{topic}[{loc[0]}]@{loc[1]}",
        total=sum(max(0, target[p] - low.get(p, 0)) for p in target),
    )


@dataclass(frozen=True)
class Message:
    """A record read from Kafka, detached from librdkafka."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def kafka_records(
    bootstrap: str, topic: str, start: Mapping[int, int], stop: Mapping[int, int]
) -> Iterator[Message]:
    """The committed records of ``topic`` from ``start`` up to ``stop`` (exclusive), per
    partition, read_committed; partitions not in ``start`` are not read."""
    wanted = {p: o for p, o in stop.items() if p in start and start[p] < o}
    if not wanted:
        return
    consumer = Consumer(
        {
            **client_config(bootstrap),
            "group.id": f"eokafka-verify-{uuid.uuid4().hex[:8]}",  # assign only, never commits
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",  # a start below the log start: from the start
        }
    )
    position = {p: start[p] for p in wanted}
    consumer.assign([TopicPartition(topic, p, start[p] or OFFSET_BEGINNING) for p in wanted])
    try:
        while any(position[p] < wanted[p] for p in wanted):
            for msg in consumer.consume(1000, 1.0):
                err = msg.error()
                p = msg.partition()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(err)
                    position[p] = max(position[p], msg.offset())
                    continue
                position[p] = msg.offset() + 1
                if msg.offset() < wanted[p]:
                    yield Message(p, msg.offset(), msg.key(), msg.value())
    finally:
        consumer.close()


def _table_reads(
    records: Iterable[Message], id_field: str, fields: Sequence[str]
) -> Iterator[Read]:
    latest: dict[bytes, Message] = {}
    for m in records:
        if m.key is None:  # a compacted topic refuses these; read one as a log record
            yield from_json((m.partition, m.offset), m.value, id_field, fields)
        elif m.value is None:
            latest.pop(m.key, None)
        else:
            latest[m.key] = m
    for m in sorted(latest.values(), key=lambda m: (m.partition, m.offset)):
        yield from_json((m.partition, m.offset), m.value, id_field, fields)


def postgres_side(dsn: str, table: str, id_field: str, fields: Sequence[str]) -> Side:
    """Rows of ``table`` (``schema.table`` allowed) as of now (a REPEATABLE READ snapshot
    taken here), streamed by a server-side cursor; a row is named by its ctid."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError as exc:
        raise ConfigError("verifying a PostgreSQL table needs psycopg: pip install "
                          "'eokafka[postgres]'") from exc
    cols = [id_field, *fields]
    name = sql.Identifier(*table.split("."))
    query = sql.SQL("SELECT ctid::text, {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, cols)), name
    )
    conn = psycopg.connect(dsn)
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        row = conn.execute(  # the transaction's first statement: the snapshot is now
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            (name.as_string(conn),),
        ).fetchone()
    except psycopg.errors.UndefinedTable as exc:
        conn.close()
        raise ConfigError(f"PostgreSQL: {exc}".strip()) from exc
    except BaseException:
        conn.close()
        raise
    estimate = int(row[0]) if row is not None and row[0] >= 0 else None
    return Side(
        f"postgres:{table}",
        _postgres_reads(conn, query, cols, id_field, fields),
        lambda loc: f"{table} row ({loc[0]},{loc[1]})",
        total=estimate,
        close=conn.close,
    )


def ctid(text: str) -> Loc:
    """A PostgreSQL row address ``(block,index)`` as a place."""
    block, index = text.strip("()").split(",")
    return int(block), int(index)


def _postgres_reads(
    conn: Any, query: Any, cols: list[str], id_field: str, fields: Sequence[str]
) -> Iterator[Read]:
    import psycopg

    try:
        with conn.cursor(name="eokafka_verify") as cur:
            cur.execute(query)
            for place, *row in cur:
                yield from_mapping(ctid(place), dict(zip(cols, row, strict=True)), id_field,
                                   fields)
    except psycopg.errors.UndefinedColumn as exc:
        raise ConfigError(f"PostgreSQL: {exc}".strip()) from exc
    finally:
        conn.close()


def finished_parts(directory: str) -> list[Path]:
    """The finished ``*.jsonl`` and ``*.csv`` files in ``directory`` (not hidden), by name."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"folder {directory!r} does not exist")
    return [
        p for p in sorted(folder.iterdir())
        if not p.name.startswith(".") and p.is_file() and p.suffix in (".jsonl", ".csv")
    ]


def files_side(
    directory: str, id_field: str, fields: Sequence[str], paths: list[Path] | None = None
) -> Side:
    """Records of the finished files in ``directory`` (or of ``paths``, listed before),
    each named by its file and line."""
    if paths is None:
        paths = finished_parts(directory)
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
            if row:
                yield csv_read((i, reader.line_num), header, row, id_field, fields)


def csv_read(
    loc: Loc, header: list[str], row: list[str], id_field: str, fields: Sequence[str]
) -> Read:
    """One CSV row (not empty) under its part's header."""
    if any(_UNDECODABLE.search(cell) for cell in row):
        return Read(loc, None, problem="not UTF-8")
    if len(row) != len(header):
        return Read(loc, None, problem=f"{len(row)} fields, the header has {len(header)}")
    return from_mapping(loc, dict(zip(header, map(CsvText, row), strict=True)), id_field, fields)
