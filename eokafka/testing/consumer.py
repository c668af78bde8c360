"""The in-memory consumer: group membership, assignment, positions and read_committed reads.

As librdkafka does: ``position()`` is invalid after an assign or a seek until a record is
consumed, and a partition EOF moves the position over trailing transaction markers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    TIMESTAMP_CREATE_TIME,
    KafkaError,
    Message,
    TopicPartition,
)

from eokafka.testing.cluster import TP, MemoryCluster
from eokafka.testing.errors import kafka_error

Callback = Callable[[Any, list[TopicPartition]], None]


@dataclass
class _Fetch:
    position: int  # the next offset to fetch
    app: int = OFFSET_INVALID  # what position() reports: after the last record handed out
    paused: bool = False
    at_eof: bool = False  # EOF reported for the current end


@dataclass
class _GroupMetadata:
    group_id: str


def no_leave(*_: Any) -> bool:
    """The in-memory group drops a member as it closes: nothing to leave, nobody to release."""
    return False


class MemoryConsumer:
    """A group member (subscribe) or an assign-only reader, over a MemoryCluster."""

    def __init__(self, cluster: MemoryCluster, conf: dict[str, Any]) -> None:
        self._cluster = cluster
        self._group = str(conf.get("group.id", ""))
        self._read_committed = conf.get("isolation.level") == "read_committed"
        self._eof = bool(conf.get("enable.partition.eof", False))
        self._reset = conf.get("auto.offset.reset", "latest")
        self._fetch: dict[TP, _Fetch] = {}
        self._topics: list[str] = []
        self._callbacks: dict[str, Callback] = {}
        self._rebalance_due = False
        self.hold = False  # the driver's switch: hand out no records (assignments still run)
        self.closed = False

    # -- group membership ----------------------------------------------------------------

    def subscribe(self, topics: list[str], **callbacks: Callback) -> None:
        self._topics = list(topics)
        self._callbacks = callbacks
        self._cluster.members[self._group] = self  # a newer member takes over (a restart)
        self._rebalance_due = True

    def _rebalance(self) -> None:
        self._rebalance_due = False
        if self._cluster.members.get(self._group) is not self:
            return
        partitions = [
            TopicPartition(topic, p)
            for topic in self._topics
            for p in range(self._cluster.partitions(topic) or 0)
        ]
        on_assign = self._callbacks.get("on_assign")
        if on_assign is not None:
            on_assign(self, partitions)
        else:
            self.assign(partitions)

    def consumer_group_metadata(self) -> _GroupMetadata:
        return _GroupMetadata(self._group)

    def memberid(self) -> str:
        return f"{self._group}-member-{id(self)}"

    def close(self) -> None:
        if self.closed:
            return
        if self._cluster.members.get(self._group) is self:
            on_revoke = self._callbacks.get("on_revoke")
            if on_revoke is not None and self._fetch:
                on_revoke(self, [TopicPartition(*tp) for tp in self._fetch])
            del self._cluster.members[self._group]
        self._fetch.clear()
        self.closed = True

    # -- assignment ----------------------------------------------------------------------

    def _start_offset(self, tp: TP, offset: int) -> int:
        if offset == OFFSET_BEGINNING:
            return 0
        if offset == OFFSET_END:
            return self._cluster.end(tp, self._read_committed)
        if offset < 0:
            committed = self._cluster.group_offsets.get(self._group, {}).get(tp)
            if committed is not None:
                return committed
            return self._start_offset(
                tp, OFFSET_BEGINNING if self._reset in ("earliest", "smallest") else OFFSET_END
            )
        return offset

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._fetch = {}
        self.incremental_assign(partitions)

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._fetch[key] = _Fetch(self._start_offset(key, tp.offset))

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._fetch.pop((tp.topic, tp.partition), None)

    def unassign(self) -> None:
        self._fetch = {}

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(*tp) for tp in self._fetch]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._set_paused(partitions, True)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._set_paused(partitions, False)

    def _set_paused(self, partitions: list[TopicPartition], paused: bool) -> None:
        for tp in partitions:
            fetch = self._fetch.get((tp.topic, tp.partition))
            if fetch is not None:
                fetch.paused = paused

    def seek(self, partition: TopicPartition) -> None:
        key = (partition.topic, partition.partition)
        if key not in self._fetch:
            raise kafka_error(KafkaError._STATE, f"seek on unassigned partition {key}")
        self._fetch[key] = _Fetch(
            self._start_offset(key, partition.offset), paused=self._fetch[key].paused
        )

    # -- offsets -------------------------------------------------------------------------

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        out = []
        for tp in partitions:
            fetch = self._fetch.get((tp.topic, tp.partition))
            out.append(TopicPartition(tp.topic, tp.partition, fetch.app if fetch else -1001))
        return out

    def committed(
        self, partitions: list[TopicPartition], timeout: float | None = None
    ) -> list[TopicPartition]:
        offsets = self._cluster.group_offsets.get(self._group, {})
        return [
            TopicPartition(tp.topic, tp.partition, offsets.get((tp.topic, tp.partition), -1001))
            for tp in partitions
        ]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float | None = None, cached: bool = False
    ) -> tuple[int, int]:
        tp = (partition.topic, partition.partition)
        return 0, self._cluster.end(tp, self._read_committed)

    # -- reading -------------------------------------------------------------------------

    def has_records(self) -> bool:
        """Whether consume() would hand out anything now (records, EOFs or a rebalance)."""
        if self._rebalance_due:
            return True
        if self.hold:
            return False
        for tp, fetch in self._fetch.items():
            if fetch.paused:
                continue
            if next(self._cluster.read(tp, fetch.position, self._read_committed), None):
                return True
            if self._eof and not fetch.at_eof:
                return True
        return False

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        if self.closed:
            raise RuntimeError("Consumer closed")
        if self._rebalance_due:
            self._rebalance()
        if self.hold:
            return []
        out: list[Message] = []
        for tp, fetch in list(self._fetch.items()):
            if fetch.paused or len(out) >= num_messages:
                continue
            for offset, entry in self._cluster.read(tp, fetch.position, self._read_committed):
                out.append(
                    Message(
                        topic=tp[0],
                        partition=tp[1],
                        offset=offset,
                        key=entry.key,
                        value=entry.value,
                        headers=list(entry.headers) if entry.headers else None,
                        timestamp=(TIMESTAMP_CREATE_TIME, entry.timestamp),
                    )
                )
                fetch.position = fetch.app = offset + 1
                fetch.at_eof = False
                if len(out) >= num_messages:
                    break
            else:
                end = self._cluster.end(tp, self._read_committed)
                fetch.position = max(fetch.position, end)
                if self._eof and not fetch.at_eof:
                    fetch.at_eof = True
                    fetch.app = fetch.position
                    eof = KafkaError(KafkaError._PARTITION_EOF, f"reached end at {end}")
                    out.append(Message(topic=tp[0], partition=tp[1], offset=end, error=eof))
        return out
