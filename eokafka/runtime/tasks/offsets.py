"""The committed offsets of the group, read back from the coordinator until it answers.

Asked when inputs are assigned (group/rebalance.py) and when the transactional producer was
re-created (tasks/commits.py): where to resume is the broker's word, never memory.

After a re-creation the old transaction may have committed or not (its outcome was unknown,
or a new producer's ``init_transactions`` decided it). The positions and stores this process
remembers may therefore be behind or ahead of Kafka, so they are thrown away: the committed
offsets are read again from the group coordinator, and the stores catch up from their
changelogs (manager.py). This is Kafka Streams' "task corrupted" path, without closing
anything: open stores keep their committed state and only read the changelog's tail.

Reading the offsets can take a while: when the broker has just come back (its coordinators
reload, the group may rebalance), or when a previous owner of the partitions left a
transaction open on their offsets (the coordinator answers only once the broker has resolved
it, up to that producer's transaction timeout later). The consumer must keep being polled
meanwhile for the group to settle. So a read is a pending state of the worker, tried once per
loop step with the inputs concerned paused, not a blocking loop.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from eokafka.errors import EokafkaError

log = logging.getLogger("eokafka.recovery")
_ATTEMPT_S = 2.0
_PATIENCE_S = 120.0  # a broker that restarts takes seconds; one that is gone, for ever

TP = tuple[str, int]


class CommittedOffsets:
    """A read of committed offsets the worker owes (``cause``: why it reads them)."""

    def __init__(self, cause: str, group: str, patience: float = _PATIENCE_S) -> None:
        self.cause = cause
        self.group = group
        self.since = time.monotonic()
        self.give_up = self.since + patience
        self.attempts = 0

    def read_offsets(
        self,
        consumer: Consumer,
        partitions: list[TopicPartition],
        fallback: dict[TP, int],
        attempt_s: float = _ATTEMPT_S,
    ) -> list[TopicPartition] | None:
        """The group's committed offset of each partition, or None if not known yet.

        A partition the group never committed gets ``fallback`` (the position the auto
        offset reset chose at assignment). After ``patience`` seconds without an answer,
        an error that names the group and the partitions.
        """
        self.attempts += 1
        query = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        if not query:
            return []
        try:
            found = consumer.committed(query, timeout=attempt_s)
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
        if time.monotonic() >= self.give_up:
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in query)
            raise EokafkaError(
                f"could not read the committed offsets of group {self.group!r} for {names} "
                f"within {self.give_up - self.since:.0f} s ({problem}); the worker stops rather "
                "than guess where to resume: check that the brokers at bootstrap_servers are "
                "reachable (an open transaction of a previous owner holds the answer only until "
                "its transaction.timeout.ms)"
            )
        level = logging.WARNING if self.attempts % 20 == 1 else logging.DEBUG
        log.log(
            level,
            "%s: reading the committed offsets of group %r failed (%s); their inputs stay "
            "paused, retrying (attempt %d, for up to %.0f s)",
            self.cause, self.group, problem, self.attempts, self.give_up - self.since,
        )  # fmt: skip
        return None
