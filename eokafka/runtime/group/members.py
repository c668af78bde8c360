"""What the worker asks of, and learns from, its consumer group besides its assignment."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from eokafka.client_configs import client_id_parts
from eokafka.config import Settings
from eokafka.errors import EokafkaError, FencedError, MissingTopicError

log = logging.getLogger("eokafka.worker")


def successor_exists(consumer: Any, admin: Any, settings: Settings, instance_id: str) -> bool:
    """Whether another group member holds this worker's instance id: a successor.

    Asked when the producer was fenced. Static members are matched by group.instance.id,
    dynamic ones by client.id (which carries the instance id). When the group can't be
    read, assume a successor: stopping is safe, fencing it back is not.
    """
    if consumer is None:
        return True
    group = settings.application_id
    client_id = f"{group}-{instance_id}-consumer"
    try:
        mine = consumer.memberid()
        future = admin.describe_consumer_groups([group], request_timeout=10)
        members = future[group].result(timeout=15).members
    except (KafkaException, RuntimeError) as exc:
        log.warning("could not read group %r to see who fenced the producer: %s", group, exc)
        return True
    for member in members:
        named = client_id_parts(member.client_id)[0]  # a query server's url may follow
        ours = member.group_instance_id == instance_id or named == client_id
        if ours and member.member_id != mine:
            return True
    return False


def consumer_error(msg: Message, group: str, instance_id: str) -> None:
    """Raise for an error event the worker can't go on after; log the ones librdkafka retries."""
    err = msg.error()
    if err.code() == KafkaError._PARTITION_EOF:  # asked for: tasks' queues take them
        return
    if err.code() == KafkaError.FENCED_INSTANCE_ID:
        raise FencedError(
            f"group.instance.id {instance_id!r} was fenced: another worker with the "
            "same instance id joined the group; this worker stops"
        )
    if err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
        raise MissingTopicError(f"input topic {msg.topic()!r}: {err.str()}")
    if err.fatal() or err.code() == KafkaError._FATAL:
        # e.g. a static member fenced by its own rejoin after a broker restart
        raise EokafkaError(
            f"the consumer of group {group!r} failed for good ({err.str()}); this worker "
            "stops: start it again, with the same instance id it takes its partitions back"
        )
    log.warning("consumer error (librdkafka retries): %s", err.str())
