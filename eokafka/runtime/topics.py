"""The app's view of its topics through the admin client: existence, creation, configs, offsets.

Input and output topics are checked and created only when told to; internal topics (named
after the application id: changelogs, repartition topics, the dead-letter topic) are always
the app's to create.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import (
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec

from eokafka.errors import MissingTopicError

log = logging.getLogger("eokafka.topics")
_TIMEOUT = 30.0
TP = tuple[str, int]
_NO_TOPIC = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)


@dataclass(frozen=True)
class PartitionState:
    """A partition's offsets and its topic's id.

    ``low`` is the earliest offset kept, ``stable`` the last stable offset (where
    read_committed reading ends: no transaction is open below it), ``high`` the high
    watermark; ``stable < high`` while a transaction is open or its marker is not written
    yet. ``topic_id`` changes when the topic is deleted and created again (None if the
    broker does not say).
    """

    low: int
    stable: int
    high: int
    topic_id: str | None


class TopicGuard:
    def __init__(self, admin: AdminClient, create: bool) -> None:
        self.admin = admin
        self._create = create
        self.new_partitions = -1  # for a topic created without a count (-1: the broker's)
        self._configs: dict[str, dict[str, str]] = {}

    def partitions(self, topic: str) -> int | None:
        """The topic's partition count, or None when it does not exist."""
        md = self.admin.list_topics(topic=topic, timeout=_TIMEOUT).topics.get(topic)
        if md is None or md.error is not None and md.error.code() in _NO_TOPIC:
            return None
        if md.error is not None:
            raise KafkaException(md.error)
        return len(md.partitions)

    def configs(self, topic: str) -> dict[str, str]:
        """The topic's effective configs (broker defaults filled in), read once per topic."""
        cached = self._configs.get(topic)
        if cached is None:
            resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
            entries = self.admin.describe_configs([resource])[resource].result(timeout=_TIMEOUT)
            cached = {name: e.value for name, e in entries.items() if e.value is not None}
            self._configs[topic] = cached
        return cached

    def ensure(
        self,
        topic: str,
        role: str,
        partitions: int = -1,
        internal: bool = False,
        config: dict[str, str] | None = None,
        why: str = "",
    ) -> bool:
        """Raise MissingTopicError naming the topic and the fix, or create it when allowed,
        with ``partitions`` (else ``new_partitions``); ``why`` says where the count came from.

        Returns whether the topic existed already.
        """
        if self.partitions(topic) is not None:
            return True
        if not (self._create or internal):
            raise MissingTopicError(
                f"{role} topic {topic!r} does not exist; create it, or let the app create "
                "missing topics (--create-topics, EOKAFKA_CREATE_TOPICS=1, "
                "App(..., create_topics=True))"
            )
        count = partitions if partitions != -1 else self.new_partitions
        futures = self.admin.create_topics(
            [NewTopic(topic, num_partitions=count, replication_factor=-1, config=config or {})]
        )
        try:
            futures[topic].result(timeout=_TIMEOUT)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            return True
        count = self._await_metadata(topic)
        log.info("created %s topic %s with %d partition(s)%s", role, topic, count, why)
        return False

    def ensure_repartition(self, topic: str, partitions: int) -> None:
        """Create a repartition topic with infinite retention (the app purges what it has
        committed past); warn about an existing one that deletes by time, since a lagging
        app would lose records it has not read yet."""
        if not self.ensure(
            topic, "repartition", partitions, internal=True, config={"retention.ms": "-1"}
        ):
            return
        retention = self.configs(topic).get("retention.ms")
        if retention != "-1":
            log.warning(
                "repartition topic %s has retention.ms=%s: records the app has not read by "
                "then are deleted and lost; set retention.ms=-1 (the app purges what it "
                "committed past)",
                topic,
                retention,
            )

    def _await_metadata(self, topic: str) -> int:
        """Topic creation is asynchronous on the broker; wait until metadata shows it.

        Bounded by time, not by a count of requests: a metadata answer comes back at once when
        the broker is idle and slowly when many topics are created together."""
        deadline = time.monotonic() + _TIMEOUT
        pause = 0.01
        while True:
            count = self.partitions(topic)
            if count:
                return count
            if time.monotonic() >= deadline:
                raise MissingTopicError(
                    f"topic {topic!r} was created but did not show in the broker's metadata "
                    f"within {_TIMEOUT:.0f} s"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def partition_state(self, topic: str, partition: int) -> PartitionState:
        """Offsets and topic id of one partition, asked all at once (four requests in flight)."""
        tp = TopicPartition(topic, partition)
        described = self.admin.describe_topics(TopicCollection([topic]), request_timeout=_TIMEOUT)
        requests = (
            (OffsetSpec.earliest(), IsolationLevel.READ_UNCOMMITTED),
            (OffsetSpec.latest(), IsolationLevel.READ_COMMITTED),
            (OffsetSpec.latest(), IsolationLevel.READ_UNCOMMITTED),
        )
        futures = [
            self.admin.list_offsets({tp: spec}, isolation_level=iso, request_timeout=_TIMEOUT)
            for spec, iso in requests
        ]
        low, stable, high = (f[tp].result(timeout=_TIMEOUT).offset for f in futures)
        topic_id = described[topic].result(timeout=_TIMEOUT).topic_id
        return PartitionState(low, stable, high, None if topic_id is None else str(topic_id))
