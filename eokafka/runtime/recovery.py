"""Where to resume after the transactional producer was re-created: the broker's word.

After a re-creation the old transaction may have committed or not (its outcome was unknown,
or a new producer's ``init_transactions`` decided it). The positions and stores this process
remembers may therefore be behind or ahead of Kafka, so they are thrown away: the committed
offsets are read again from the group coordinator, and the stores catch up from their
changelogs (StoreTasks.resync). This is Kafka Streams' "task corrupted" path, without closing
anything: open stores keep their committed state and only read the changelog's tail.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from eokafka.errors import EokafkaError

log = logging.getLogger("eokafka.recovery")
_ATTEMPT_S = 5.0
_PATIENCE_S = 120.0  # a broker that restarts takes seconds; one that is gone, for ever
_BACKOFF_S = 0.5

TP = tuple[str, int]


def committed_positions(
    consumer: Consumer,
    partitions: list[TopicPartition],
    group: str,
    fallback: dict[TP, int],
    patience: float = _PATIENCE_S,
) -> list[TopicPartition]:
    """The group's committed offset of each partition, read from the group coordinator.

    A partition the group never committed gets ``fallback`` (the position the auto offset
    reset chose at assignment). Retries while the coordinator is unreachable or loading, for
    up to ``patience`` seconds; then an error that names the group and the partitions.
    """
    if not partitions:
        return []
    give_up = time.monotonic() + patience
    query = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
    while True:
        problem: str
        try:
            found = consumer.committed(query, timeout=_ATTEMPT_S)
        except KafkaException as exc:
            problem = f"{exc.args[0].name()}: {exc.args[0].str()}"
        else:
            bad = [tp for tp in found if tp.error is not None]
            if not bad:
                for tp in found:
                    if tp.offset < 0:
                        tp.offset = fallback.get((tp.topic, tp.partition), tp.offset)
                return found
            problem = ", ".join(f"{tp.topic}[{tp.partition}]: {tp.error.str()}" for tp in bad)
        if time.monotonic() >= give_up:
            raise EokafkaError(
                f"could not read the committed offsets of group {group!r} for "
                f"{', '.join(f'{tp.topic}[{tp.partition}]' for tp in query)} within "
                f"{patience:.0f} s ({problem}); the worker stops rather than guess where to "
                "resume: check that the brokers at bootstrap_servers are reachable"
            )
        log.warning("reading committed offsets of group %r failed (%s), retrying", group, problem)
        time.sleep(_BACKOFF_S)
