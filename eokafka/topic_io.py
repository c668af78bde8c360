"""The work of ``eokafka produce`` and ``eokafka consume``: records into a topic, and out.

``produce`` checks every record before it sends any (a bad line sends nothing), sends them
with an idempotent producer that partitions keys as the app's producers do, and returns
where each landed, or raises naming the records the cluster did not take. ``read`` reads a
topic by assign(), read_committed unless told otherwise, from a start position per
partition, up to the end offsets seen at the start (``until_end``) or for ever.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from eokafka.errors import EokafkaError
from eokafka.records_io import OutRecord
from eokafka.toolclients import DELIVERY_TIMEOUT_MS
from eokafka.topic_admin import TIMEOUT, TopicError

Placed = tuple[int, int]  # partition, offset


def produce(
    producer: Producer,
    topic: str,
    count: int,
    records: list[OutRecord],
    partition: int | None,
    source: str = "stdin",
) -> list[Placed]:
    """Send ``records`` (of ``source``) to ``topic`` (``count`` partitions), each to
    ``partition``, its own, or where the producer's partitioner puts its key; return where
    each one landed."""
    for r in records:
        p = partition if partition is not None else r.partition
        if p is not None and p >= count:
            raise TopicError(
                f"{source} line {r.line}: topic {topic!r} has partitions 0..{count - 1}, not {p}"
            )
    placed: dict[int, Placed] = {}
    failed: dict[int, KafkaError] = {}

    def report(line: int) -> object:
        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failed[line] = err
            else:
                placed[line] = (msg.partition(), msg.offset())

        return delivered

    for r in records:
        p = partition if partition is not None else r.partition
        extra = {} if p is None else {"partition": p}
        if r.timestamp is not None:
            extra["timestamp"] = r.timestamp
        while True:
            try:
                producer.produce(
                    topic, r.value, r.key, headers=r.headers or None,
                    on_delivery=report(r.line), **extra,
                )  # fmt: skip
                break
            except BufferError:  # the local queue is full: let deliveries make room
                producer.poll(0.1)
    left = producer.flush(DELIVERY_TIMEOUT_MS / 1000 + 5)
    if failed or left:
        lines = sorted(failed)
        first = f"{source} line {lines[0]}: {failed[lines[0]].str()}" if lines else "no report"
        raise EokafkaError(
            f"{len(failed) + left} of {len(records)} records were not written to {topic!r} "
            f"({first}); records before a failed one may have been written"
        )
    return [placed[r.line] for r in records]


@dataclass(frozen=True)
class Start:
    """Where reading starts: ``beginning``, ``end``, an offset, or a time (epoch ms)."""

    kind: str
    value: int = 0


def parse_start(text: str) -> Start:
    from eokafka.reset import parse_datetime

    word = text.strip().lower()
    if word in ("beginning", "end"):
        return Start(word)
    if word.isdigit():
        return Start("offset", int(word))
    return Start("time", parse_datetime(text, "--from"))


def start_offsets(
    consumer: Consumer, topic: str, partitions: list[int], start: Start
) -> dict[int, int]:
    """Each partition's absolute start offset (an absolute offset needs no offset query,
    which librdkafka delays 500 ms on a partition whose leader it does not know yet)."""
    marks = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), TIMEOUT) for p in partitions
    }
    if start.kind == "beginning":
        return {p: low for p, (low, _) in marks.items()}
    if start.kind == "end":
        return {p: high for p, (_, high) in marks.items()}
    if start.kind == "offset":
        for p, (low, high) in marks.items():
            if not low <= start.value <= high:
                raise TopicError(
                    f"--from {start.value}: partition {p} of {topic!r} holds offsets "
                    f"{low}..{high}"
                )
        return dict.fromkeys(partitions, start.value)
    asked = [TopicPartition(topic, p, start.value) for p in partitions]
    found = consumer.offsets_for_times(asked, TIMEOUT)
    return {
        tp.partition: (marks[tp.partition][1] if tp.offset in (-1, OFFSET_END) else tp.offset)
        for tp in found
    }


def end_offsets(
    admin: AdminClient, topic: str, partitions: list[int], committed: bool
) -> dict[int, int]:
    """Where reading of each partition ends now: the last stable offset for read_committed
    (no transaction open below it), else the high watermark."""
    level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    request = {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}
    futures = admin.list_offsets(request, isolation_level=level, request_timeout=TIMEOUT)
    return {tp.partition: f.result(TIMEOUT).offset for tp, f in futures.items()}


def read(
    consumer: Consumer,
    topic: str,
    offsets: dict[int, int],
    ends: dict[int, int] | None = None,
    deadline: float | None = None,
) -> Iterator[Message]:
    """The records of ``topic`` from ``offsets`` on; with ``ends``, up to them, then stop;
    at the latest at ``deadline`` (time.monotonic()).

    A read_committed consumer never sees a commit marker or an aborted record, so a
    partition's position may stop short of its end offset: the partition's EOF says where
    it is then.
    """
    position = dict(offsets)
    open_ = {p for p in position if ends is None or position[p] < ends[p]}
    if not open_:
        return
    consumer.assign([TopicPartition(topic, p, position[p]) for p in sorted(open_)])
    while open_ and (deadline is None or time.monotonic() < deadline):
        for msg in consumer.consume(500, 0.1):
            p = msg.partition()
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)
                position[p] = max(position[p], msg.offset())
            elif p in open_ and (ends is None or msg.offset() < ends[p]):
                position[p] = msg.offset() + 1
                yield msg
            else:
                position[p] = msg.offset() + 1
            if ends is not None and p in open_ and position[p] >= ends[p]:
                open_.discard(p)
