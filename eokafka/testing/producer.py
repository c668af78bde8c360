"""The in-memory transactional producer: fencing, transactions, offsets sent in them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from eokafka.client_configs import DEFAULT_PARTITIONER
from eokafka.testing.cluster import MemoryCluster, Txn
from eokafka.testing.errors import kafka_error
from eokafka.testing.partitioners import check


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
            raise kafka_error(
                KafkaError._FENCED, "producer fenced by a newer instance", fatal=True
            )

    def init_transactions(self, timeout: float | None = None) -> None:
        tid = self.transactional_id
        if tid is None:
            raise kafka_error(KafkaError._NOT_CONFIGURED, "transactional.id is not set")
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
            raise kafka_error(KafkaError._STATE, "a transaction is already open")
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
            raise kafka_error(KafkaError._STATE, "produce outside a transaction")
        count = self._cluster.partitions(topic)
        if count is None:
            raise kafka_error(KafkaError._UNKNOWN_TOPIC, f"unknown topic {topic!r}")
        if partition < 0:
            partition = self._cluster.partition_for(topic, key, self._partitioner)
        elif partition >= count:
            raise kafka_error(KafkaError._UNKNOWN_PARTITION, f"{topic}[{partition}] does not exist")
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
            raise kafka_error(KafkaError._STATE, "no open transaction")
        group = self.txn.offsets.setdefault(group_metadata.group_id, {})
        group.update({(tp.topic, tp.partition): tp.offset for tp in offsets})

    def commit_transaction(self, timeout: float | None = None) -> None:
        self._check()
        if self.txn is None:
            raise kafka_error(KafkaError._STATE, "no open transaction")
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
