"""Small, dependable Kafka helpers for integration tests.

They talk to the broker with plain confluent-kafka clients (never eokafka itself), so a
bug in the framework cannot hide behind a matching bug in the test harness. Every wait
is on an observable condition (metadata, end offsets, EOF events), never a fixed sleep.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal, NamedTuple

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

__all__ = [
    "Record",
    "create_topic",
    "end_offsets",
    "produce_records",
    "read_committed",
    "read_uncommitted",
    "topic_partitions",
    "unique_name",
]


class Record(NamedTuple):
    """A consumed record, detached from librdkafka so tests can compare and sort freely."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp: int = -1  # ms, as the broker reports it (CreateTime or LogAppendTime)


def unique_name(prefix: str) -> str:
    """Topic/group/transactional-id name that cannot collide with other tests or runs."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# Client settings of secured test brokers, by bootstrap address (security.protocol, sasl.*,
# ssl.ca.location): every helper uses them, so a test against SASL_SSL reads the same way.
CLIENT_SECURITY: dict[str, dict[str, str]] = {}


def _client(bootstrap: str, **conf: Any) -> dict[str, Any]:
    return {**CLIENT_SECURITY.get(bootstrap, {}), "bootstrap.servers": bootstrap, **conf}


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient(_client(bootstrap))


def topic_partitions(bootstrap: str, topic: str, timeout: float = 30.0) -> list[int]:
    """Partition ids of ``topic``; raises KafkaException if it does not exist."""
    metadata = _admin(bootstrap).list_topics(topic=topic, timeout=timeout)
    info = metadata.topics.get(topic)
    if info is None:
        raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, f"no topic {topic}"))
    if info.error is not None:
        raise KafkaException(info.error)
    return sorted(info.partitions)


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create ``name`` and return only once every partition has a leader.

    CreateTopics completes when the controller has committed the topic; the broker
    may serve metadata for it a moment later, and produce/assign before that fails.
    """
    admin = _admin(bootstrap)
    new_topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
    futures = admin.create_topics([new_topic], operation_timeout=timeout, request_timeout=timeout)
    futures[name].result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        info = admin.list_topics(topic=name, timeout=timeout).topics.get(name)
        if (
            info is not None
            and info.error is None
            and len(info.partitions) == partitions
            and all(p.leader >= 0 for p in info.partitions.values())
        ):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topic {name} has no leader for all {partitions} partitions")
        time.sleep(0.05)  # poll interval between metadata requests


def produce_records(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes | None, bytes | None]],
    partition: int | None = None,
    timeout: float = 60.0,
    timestamps: list[int] | None = None,
) -> None:
    """Produce ``(key, value)`` pairs non-transactionally; raise unless all were acked.

    ``timestamps`` gives each record's CreateTime (ms); by default the producer's clock.
    """
    producer = Producer(
        _client(
            bootstrap,
            **{
                "linger.ms": 5,
                "acks": "all",
                "enable.idempotence": True,  # retries must not duplicate or reorder test input
                "partitioner": "murmur2_random",  # keys where a Java producer puts them
            },
        )
    )
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    extra: dict[str, Any] = {} if partition is None else {"partition": partition}
    for i, (key, value) in enumerate(records):
        if timestamps is not None:
            extra["timestamp"] = timestamps[i]
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery, **extra)
                break
            except BufferError:
                producer.poll(0.1)  # local queue full: serve delivery reports, then retry
        producer.poll(0)
    remaining = producer.flush(timeout)
    if remaining:
        raise TimeoutError(f"{remaining} of {len(records)} records to {topic} not delivered")
    if errors:
        raise KafkaException(errors[0])


_LEADERSHIP_MOVING = {
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.OFFSET_NOT_AVAILABLE,
}


def end_offsets(
    bootstrap: str,
    topic: str,
    isolation: Literal["committed", "uncommitted"] = "committed",
    timeout: float = 30.0,
) -> dict[int, int]:
    """Per-partition end offsets: the last stable offset (committed) or high watermark."""
    levels = {
        "committed": IsolationLevel.READ_COMMITTED,
        "uncommitted": IsolationLevel.READ_UNCOMMITTED,
    }
    if isolation not in levels:
        raise ValueError(f"isolation must be 'committed' or 'uncommitted', not {isolation!r}")
    request = {
        TopicPartition(topic, p): OffsetSpec.latest()
        for p in topic_partitions(bootstrap, topic, timeout)
    }
    # Keep the client referenced until the futures resolve: a collected AdminClient
    # never completes its pending requests.
    admin = _admin(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        futures = admin.list_offsets(
            request, isolation_level=levels[isolation], request_timeout=timeout
        )
        try:
            return {tp.partition: future.result(timeout).offset for tp, future in futures.items()}
        except KafkaException as exc:
            # Just after a broker restart a partition's leader epoch can be ahead of the
            # broker's metadata for a moment (UNKNOWN_LEADER_EPOCH): ask again.
            err = exc.args[0]
            moving = err.retriable() or err.code() in _LEADERSHIP_MOVING
            if not moving or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def read_committed(
    bootstrap: str,
    topic: str,
    expected_count: int | None = None,
    timeout: float = 60.0,
) -> list[Record]:
    """Read ``topic`` from the beginning as a read_committed consumer would see it.

    Reads every partition up to its last stable offset. With ``expected_count`` it keeps
    going (re-reading end offsets) until at least that many records are visible, which
    lets a test wait for an in-flight transaction to commit. Returns records sorted by
    (partition, offset); raises TimeoutError if the goal is not reached in ``timeout``.
    """
    return _read(bootstrap, topic, expected_count, timeout, "committed")


def read_uncommitted(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Record]:
    """Every record in ``topic`` up to its high watermark, aborted and open ones included."""
    return _read(bootstrap, topic, None, timeout, "uncommitted")


def _read(
    bootstrap: str,
    topic: str,
    expected_count: int | None,
    timeout: float,
    isolation: Literal["committed", "uncommitted"],
) -> list[Record]:
    deadline = time.monotonic() + timeout
    partitions = topic_partitions(bootstrap, topic, timeout)
    consumer = Consumer(
        _client(
            bootstrap,
            **{
                "group.id": unique_name("eokafka-test-reader"),  # never committed: assign()
                "enable.auto.commit": False,
                "isolation.level": f"read_{isolation}",
                "auto.offset.reset": "earliest",
                # EOF events report the position even when the log ends in a transaction
                # marker, which no record offset would ever reveal.
                "enable.partition.eof": True,
            },
        )
    )
    records: list[Record] = []
    position = dict.fromkeys(partitions, 0)

    def take(msg: Message | None) -> None:
        if msg is None:
            return
        err = msg.error()
        part, offset = msg.partition(), msg.offset()
        assert part is not None and offset is not None
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(err)
            position[part] = max(position[part], offset)
            return
        position[part] = max(position[part], offset + 1)
        headers = list(msg.headers() or [])
        records.append(Record(part, offset, msg.key(), msg.value(), headers, msg.timestamp()[1]))

    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    try:
        while True:
            target = end_offsets(bootstrap, topic, isolation, timeout)
            while any(position[p] < target[p] for p in partitions):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"read {len(records)} records from {topic} but positions {position} "
                        f"did not reach the {isolation} end offsets {target} in {timeout}s"
                    )
                take(consumer.poll(min(remaining, 1.0)))
            if expected_count is None or len(records) >= expected_count:
                return sorted(records)
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"only {len(records)} of {expected_count} committed records visible in "
                    f"{topic} after {timeout}s (committed end offsets {target})"
                )
            take(consumer.poll(0.5))  # wait for more data before re-reading end offsets
    finally:
        consumer.close()
