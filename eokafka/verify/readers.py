"""The sides ``eokafka verify`` compares: a Kafka topic, a PostgreSQL table, a folder of files."""

from __future__ import annotations

import csv
import json
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
from eokafka.verify.compare import Item, item

_TIMEOUT = 30.0


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


def kafka_items(
    bootstrap: str, topic: str, id_field: str, fields: Sequence[str]
) -> Iterator[Item | None]:
    """JSON values of ``topic`` as a read_committed consumer sees them, up to the LSO."""
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
                    yield _json_item(msg.value(), id_field, fields)
    finally:
        consumer.close()


def _json_item(raw: bytes | str | None, id_field: str, fields: Sequence[str]) -> Item | None:
    try:
        return item(json.loads(raw or b"null"), id_field, fields)
    except ValueError:
        return None


def postgres_items(
    dsn: str, table: str, id_field: str, fields: Sequence[str]
) -> Iterator[Item | None]:
    """Rows of ``table`` (``schema.table`` allowed), streamed by a server-side cursor."""
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
                for row in cur:
                    yield item(dict(zip(cols, row, strict=True)), id_field, fields)
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
            raise ConfigError(f"PostgreSQL: {exc}".strip()) from exc


def file_items(
    directory: str, id_field: str, fields: Sequence[str]
) -> Iterator[Item | None]:
    """Records of the finished ``*.jsonl`` and ``*.csv`` files in ``directory`` (not hidden)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"folder {directory!r} does not exist")
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield _json_item(line, id_field, fields)
        elif path.suffix == ".csv":
            with open(path, encoding="utf-8", newline="") as f:
                for row in csv.DictReader(f):
                    yield item(dict(row), id_field, fields)
