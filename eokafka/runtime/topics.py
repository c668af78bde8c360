"""Checks that the topics an app reads and writes exist, creating them only when told to."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from eokafka.errors import MissingTopicError

log = logging.getLogger("eokafka.topics")
_TIMEOUT = 30.0


class TopicGuard:
    def __init__(self, admin: AdminClient, create: bool) -> None:
        self.admin = admin
        self._create = create
        self._configs: dict[str, dict[str, str]] = {}

    def partitions(self, topic: str) -> int | None:
        """The topic's partition count, or None when it does not exist."""
        md = self.admin.list_topics(topic=topic, timeout=_TIMEOUT).topics.get(topic)
        if md is None or md.error is not None and md.error.code() in (
            KafkaError.UNKNOWN_TOPIC_OR_PART,
            KafkaError._UNKNOWN_TOPIC,
        ):
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
    ) -> None:
        """Raise MissingTopicError naming the topic and the fix, or create it when allowed.

        Internal topics (named after the application id) are always the app's to create.
        """
        if self.partitions(topic) is not None:
            return
        if not (self._create or internal):
            raise MissingTopicError(
                f"{role} topic {topic!r} does not exist; create it, or let the app create "
                "missing topics (--create-topics, EOKAFKA_CREATE_TOPICS=1, "
                "App(..., create_topics=True))"
            )
        futures = self.admin.create_topics(
            [
                NewTopic(
                    topic, num_partitions=partitions, replication_factor=-1, config=config or {}
                )
            ]
        )
        try:
            futures[topic].result(timeout=_TIMEOUT)
            log.info("created %s topic %s", role, topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        self._await_metadata(topic)

    def _await_metadata(self, topic: str) -> None:
        """Topic creation is asynchronous on the broker; wait until metadata shows it."""
        for _ in range(100):
            if self.partitions(topic):
                return
        raise MissingTopicError(f"topic {topic!r} was created but never showed in metadata")
