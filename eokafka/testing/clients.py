"""In-memory stand-ins for confluent-kafka's Consumer, Producer and AdminClient.

They answer the calls the worker, its transactions and its store restores make, the way
librdkafka answers them where the worker depends on it: messages are real
``confluent_kafka.Message`` objects, errors are ``KafkaException(KafkaError)`` with the
fatal / abortable flags, ``position()`` is invalid after an assign or a seek until a record
is consumed, and a partition EOF moves the position over trailing transaction markers.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    TIMESTAMP_CREATE_TIME,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec

from eokafka.config import DEFAULT_PARTITIONER
from eokafka.testing.cluster import TP, MemoryCluster, Txn
from eokafka.testing.partitioners import check

Callback = Callable[[Any, list[TopicPartition]], None]
_EARLIEST = type(OffsetSpec.earliest())


def _error(code: int, reason: str, **flags: bool) -> KafkaException:
    return KafkaException(KafkaError(code, reason, **flags))


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
            raise _error(KafkaError._STATE, f"seek on unassigned partition {key}")
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


class MemoryProducer:
    """A transactional producer; ``fail_commit`` makes its next commit fail abortably.

    Records without a partition go where ``partitioner`` puts them (see
    ``eokafka.testing.partitioners``); without that setting, eokafka's default (murmur2).
    """

    def __init__(self, cluster: MemoryCluster, conf: dict[str, Any]) -> None:
        self._cluster = cluster
        self.transactional_id: str | None = conf.get("transactional.id")
        self._report_success = not conf.get("delivery.report.only.error", False)
        self._partitioner = check(str(conf.get("partitioner", DEFAULT_PARTITIONER)))
        self.txn: Txn | None = None
        self.fenced = False
        self.fail_commit: KafkaError | None = None
        self._reports: list[tuple[Callable[..., None], Message]] = []

    def _check(self) -> None:
        if self.fenced:
            raise _error(
                KafkaError._FENCED, "producer fenced by a newer instance", fatal=True
            )

    def init_transactions(self, timeout: float | None = None) -> None:
        tid = self.transactional_id
        if tid is None:
            raise _error(KafkaError._NOT_CONFIGURED, "transactional.id is not set")
        previous = self._cluster.producers.get(tid)
        if previous is not None and previous is not self:
            if previous.txn is not None:
                self._cluster.end_transaction(previous.txn, commit=False)
                previous.txn = None
            previous.fenced = True
        self._cluster.producers[tid] = self

    def begin_transaction(self) -> None:
        self._check()
        if self.txn is not None:
            raise _error(KafkaError._STATE, "a transaction is already open")
        self.txn = Txn()

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        callback: Callable[..., None] | None = None,  # confluent-kafka's positional order
        on_delivery: Callable[..., None] | None = None,
        timestamp: int = 0,
        headers: Any = None,
    ) -> None:
        self._check()
        if self.transactional_id is not None and self.txn is None:
            raise _error(KafkaError._STATE, "produce outside a transaction")
        count = self._cluster.partitions(topic)
        if count is None:
            raise _error(KafkaError._UNKNOWN_TOPIC, f"unknown topic {topic!r}")
        if partition < 0:
            partition = self._cluster.partition_for(topic, key, self._partitioner)
        elif partition >= count:
            raise _error(KafkaError._UNKNOWN_PARTITION, f"{topic}[{partition}] does not exist")
        if isinstance(headers, dict):
            headers = list(headers.items())
        offset = self._cluster.append(
            topic, partition, key, value, timestamp or None, headers, self.txn
        )
        report = callback or on_delivery
        if report is not None and self._report_success:
            msg = Message(topic=topic, partition=partition, offset=offset, key=key, value=value)
            self._reports.append((report, msg))

    def poll(self, timeout: float = 0) -> int:
        reports, self._reports = self._reports, []
        for report, msg in reports:
            report(None, msg)
        return len(reports)

    def flush(self, timeout: float = -1) -> int:
        self.poll()
        return 0

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        self._reports = []

    def __len__(self) -> int:
        return len(self._reports)

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], group_metadata: Any, timeout: float | None = None
    ) -> None:
        self._check()
        if self.txn is None:
            raise _error(KafkaError._STATE, "no open transaction")
        group = self.txn.offsets.setdefault(group_metadata.group_id, {})
        group.update({(tp.topic, tp.partition): tp.offset for tp in offsets})

    def commit_transaction(self, timeout: float | None = None) -> None:
        self._check()
        if self.txn is None:
            raise _error(KafkaError._STATE, "no open transaction")
        self.flush()
        if self.fail_commit is not None:
            err, self.fail_commit = self.fail_commit, None
            raise KafkaException(err)
        self._cluster.end_transaction(self.txn, commit=True)
        self.txn = None

    def abort_transaction(self, timeout: float | None = None) -> None:
        self._check()
        self._reports = []
        if self.txn is not None:
            self._cluster.end_transaction(self.txn, commit=False)
            self.txn = None


@dataclass
class MemoryAdmin:
    """The admin calls the worker makes: metadata, topic creation, offsets."""

    cluster: MemoryCluster
    conf: dict[str, Any] = field(default_factory=dict)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> SimpleNamespace:
        names = [topic] if topic is not None else list(self.cluster.logs)
        topics = {}
        for name in names:
            count = self.cluster.partitions(name)
            if count is not None:
                partitions = {p: SimpleNamespace(id=p, leader=1) for p in range(count)}
                topics[name] = SimpleNamespace(topic=name, partitions=partitions, error=None)
        return SimpleNamespace(topics=topics)

    def create_topics(self, new_topics: list[Any], **_: Any) -> dict[str, Future[None]]:
        futures: dict[str, Future[None]] = {}
        for new in new_topics:
            future: Future[None] = Future()
            if self.cluster.create_topic(new.topic, new.num_partitions, new.config):
                future.set_result(None)
            else:
                future.set_exception(
                    _error(KafkaError.TOPIC_ALREADY_EXISTS, f"topic {new.topic!r} exists")
                )
            futures[new.topic] = future
        return futures

    def describe_topics(self, topics: Any, **_: Any) -> dict[str, Future[Any]]:
        """Each topic's id, the one thing the worker reads of a topic description."""
        futures: dict[str, Future[Any]] = {}
        for name in topics.topic_names:
            future: Future[Any] = Future()
            topic_id = self.cluster.topic_ids.get(name)
            if topic_id is None:
                future.set_exception(_error(KafkaError.UNKNOWN_TOPIC_OR_PART, f"no topic {name!r}"))
            else:
                future.set_result(SimpleNamespace(name=name, topic_id=topic_id))
            futures[name] = future
        return futures

    def describe_configs(self, resources: list[Any], **_: Any) -> dict[Any, Future[Any]]:
        """A topic's configs, each entry with a ``value`` as the admin client gives it."""
        futures: dict[Any, Future[Any]] = {}
        for resource in resources:
            future: Future[Any] = Future()
            configs = self.cluster.configs.get(resource.name)
            if configs is None:
                future.set_exception(
                    _error(KafkaError.UNKNOWN_TOPIC_OR_PART, f"no topic {resource.name!r}")
                )
            else:
                future.set_result({k: SimpleNamespace(value=v) for k, v in configs.items()})
            futures[resource] = future
        return futures

    def list_offsets(
        self, request: dict[TopicPartition, Any], isolation_level: Any = None, **_: Any
    ) -> dict[TopicPartition, Future[Any]]:
        """Earliest (0: nothing is ever deleted here) or latest offsets, by isolation."""
        read_committed = isolation_level == IsolationLevel.READ_COMMITTED
        futures: dict[TopicPartition, Future[Any]] = {}
        for tp, spec in request.items():
            key = (tp.topic, tp.partition)
            earliest = isinstance(spec, _EARLIEST)
            offset = 0 if earliest else self.cluster.end(key, read_committed)
            future: Future[Any] = Future()
            future.set_result(SimpleNamespace(offset=offset))
            futures[tp] = future
        return futures

    def list_consumer_group_offsets(
        self, request: list[ConsumerGroupTopicPartitions], **_: Any
    ) -> dict[str, Future[ConsumerGroupTopicPartitions]]:
        """Committed offsets only: a transaction's offsets count once it commits."""
        futures: dict[str, Future[ConsumerGroupTopicPartitions]] = {}
        for item in request:
            offsets = self.cluster.group_offsets.get(item.group_id, {})
            tps = [
                TopicPartition(tp.topic, tp.partition, offsets.get((tp.topic, tp.partition), -1001))
                for tp in item.topic_partitions or []
            ]
            future: Future[ConsumerGroupTopicPartitions] = Future()
            future.set_result(ConsumerGroupTopicPartitions(item.group_id, tps))
            futures[item.group_id] = future
        return futures

    def describe_consumer_groups(self, groups: list[str], **_: Any) -> dict[str, Future[Any]]:
        future: Future[Any] = Future()
        future.set_exception(_error(KafkaError._NOT_IMPLEMENTED, "not in the test driver"))
        return dict.fromkeys(groups, future)
