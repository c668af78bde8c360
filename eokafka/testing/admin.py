"""The in-memory admin client: metadata, topic creation and configs, offsets."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec

from eokafka.testing.cluster import MemoryCluster
from eokafka.testing.errors import kafka_error

_EARLIEST = type(OffsetSpec.earliest())


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
                    kafka_error(KafkaError.TOPIC_ALREADY_EXISTS, f"topic {new.topic!r} exists")
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
                future.set_exception(
                    kafka_error(KafkaError.UNKNOWN_TOPIC_OR_PART, f"no topic {name!r}")
                )
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
                    kafka_error(KafkaError.UNKNOWN_TOPIC_OR_PART, f"no topic {resource.name!r}")
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
        future.set_exception(kafka_error(KafkaError._NOT_IMPLEMENTED, "not in the test driver"))
        return dict.fromkeys(groups, future)
