"""An in-memory Kafka for the test driver: partitioned logs, transactions, group offsets.

It keeps what exactly-once depends on: records of an open transaction hold the last stable
offset back and stay invisible to read_committed readers, commit and abort markers take an
offset each, aborted records are never read, consumed offsets sent in a transaction become
the group's committed offsets only when it commits, and a producer that starts with a
transactional.id in use fences the old one and aborts its open transaction.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from eokafka.client_configs import DEFAULT_PARTITIONER
from eokafka.testing.partitioners import keyed_partition

TP = tuple[str, int]
Header = tuple[str, bytes | None]


@dataclass
class Txn:
    """One transaction of one transactional producer."""

    state: str = "open"  # open, committed, aborted
    firsts: dict[TP, int] = field(default_factory=dict)  # first offset written per partition
    offsets: dict[str, dict[TP, int]] = field(default_factory=dict)  # group -> consumed


@dataclass(slots=True)
class Entry:
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: list[Header] | None
    seq: int  # the order of production across all partitions
    txn: Txn | None = None
    marker: bool = False  # a commit or abort marker: takes an offset, is never read

    @property
    def committed(self) -> bool:
        return not self.marker and (self.txn is None or self.txn.state == "committed")

    @property
    def pending(self) -> bool:
        return not self.marker and self.txn is not None and self.txn.state == "open"


# The broker defaults of the topic configs the worker reads (Kafka 4).
TOPIC_DEFAULTS: dict[str, str] = {
    "cleanup.policy": "delete",
    "compression.type": "producer",
    "max.message.bytes": "1048588",
    "retention.ms": "604800000",
}


class MemoryCluster:
    """Topics, consumer groups and transactional ids of one test; clients share it."""

    def __init__(self, default_partitions: int = 1, now_ms: int = 0) -> None:
        self.default_partitions = default_partitions
        self.now_ms = now_ms
        self.logs: dict[str, list[list[Entry]]] = {}
        self.configs: dict[str, dict[str, str]] = {}  # topic -> configs set at creation
        self.topic_ids: dict[str, str] = {}  # a topic made anew gets a new id, as in Kafka
        self.group_offsets: dict[str, dict[TP, int]] = {}
        self.members: dict[str, Any] = {}  # group -> the consumer that holds the assignment
        self.producers: dict[str, Any] = {}  # transactional.id -> the producer that owns it
        self._open: dict[TP, set[int]] = {}  # first offsets of open transactions
        self._seq = itertools.count()
        self._round_robin: dict[str, int] = {}

    def clock(self) -> float:
        """The virtual monotonic clock the worker reads, in seconds."""
        return self.now_ms / 1000

    # -- topics --------------------------------------------------------------------------

    def create_topic(
        self, topic: str, partitions: int = -1, config: dict[str, str] | None = None
    ) -> bool:
        """Create ``topic``; False when it exists already."""
        if topic in self.logs:
            return False
        count = partitions if partitions > 0 else self.default_partitions
        self.logs[topic] = [[] for _ in range(count)]
        self.configs[topic] = {**TOPIC_DEFAULTS, **(config or {})}
        self.topic_ids[topic] = uuid.uuid4().hex
        return True

    def partitions(self, topic: str) -> int | None:
        log = self.logs.get(topic)
        return None if log is None else len(log)

    def partition_for(
        self, topic: str, key: bytes | None, partitioner: str = DEFAULT_PARTITIONER
    ) -> int:
        """The partition librdkafka's ``partitioner`` picks (eokafka's default: murmur2, as
        the Java client); where it would pick at random, the topic's partitions in turn."""
        count = len(self.logs[topic])
        chosen = keyed_partition(partitioner, key, count)
        if chosen is not None:
            return chosen
        turn = self._round_robin.get(topic, 0)
        self._round_robin[topic] = turn + 1
        return turn % count

    # -- writing -------------------------------------------------------------------------

    def append(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        timestamp: int | None,
        headers: list[Header] | None,
        txn: Txn | None = None,
    ) -> int:
        log = self.logs[topic][partition]
        offset = len(log)
        ts = self.now_ms if timestamp is None else timestamp
        log.append(Entry(key, value, ts, headers, next(self._seq), txn))
        if txn is not None and (topic, partition) not in txn.firsts:
            txn.firsts[(topic, partition)] = offset
            self._open.setdefault((topic, partition), set()).add(offset)
        return offset

    def end_transaction(self, txn: Txn, commit: bool) -> None:
        """Write the markers; a commit also makes its consumed offsets the group's."""
        txn.state = "committed" if commit else "aborted"
        for (topic, partition), first in txn.firsts.items():
            self.logs[topic][partition].append(
                Entry(None, None, self.now_ms, None, next(self._seq), txn, marker=True)
            )
            self._open[(topic, partition)].discard(first)
        if commit:
            for group, offsets in txn.offsets.items():
                self.group_offsets.setdefault(group, {}).update(offsets)

    # -- reading -------------------------------------------------------------------------

    def high_watermark(self, tp: TP) -> int:
        return len(self.logs[tp[0]][tp[1]])

    def last_stable(self, tp: TP) -> int:
        """The offset read_committed readers stop at: the first of an open transaction."""
        return min(self._open.get(tp) or (self.high_watermark(tp),))

    def end(self, tp: TP, read_committed: bool) -> int:
        return self.last_stable(tp) if read_committed else self.high_watermark(tp)

    def read(self, tp: TP, start: int, read_committed: bool) -> Iterator[tuple[int, Entry]]:
        """The records a reader sees from ``start`` to the end it may read to."""
        log = self.logs[tp[0]][tp[1]]
        for offset in range(max(start, 0), self.end(tp, read_committed)):
            entry = log[offset]
            if entry.committed or (not read_committed and entry.pending):
                yield offset, entry

    def records(self, topic: str, include_open: bool) -> list[tuple[int, int, Entry]]:
        """(partition, offset, entry) of a topic in the order they were produced."""
        out = [
            (partition, offset, entry)
            for partition, log in enumerate(self.logs.get(topic, []))
            for offset, entry in enumerate(log)
            if entry.committed or (include_open and entry.pending)
        ]
        return sorted(out, key=lambda item: item[2].seq)
