"""Where to resume after the transactional producer was re-created: the broker's word.

After a re-creation the old transaction may have committed or not (its outcome was unknown,
or a new producer's ``init_transactions`` decided it). The positions and stores this process
remembers may therefore be behind or ahead of Kafka, so they are thrown away: the committed
offsets are read again from the group coordinator, and the stores catch up from their
changelogs (Tasks.resync). This is Kafka Streams' "task corrupted" path, without closing
anything: open stores keep their committed state and only read the changelog's tail.

Reading the offsets can take a while when the broker has just come back (its coordinators
reload, the group may rebalance), and the consumer must keep being polled meanwhile for the
group to settle. So a re-sync is a pending state of the worker, tried once per loop step with
its inputs paused, not a blocking loop.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaException, TopicPartition

from eokafka.errors import EokafkaError

if TYPE_CHECKING:
    from eokafka.runtime.tasks import Tasks

log = logging.getLogger("eokafka.recovery")
_ATTEMPT_S = 2.0
_PATIENCE_S = 120.0  # a broker that restarts takes seconds; one that is gone, for ever

TP = tuple[str, int]


class PendingResync:
    """A re-sync the worker owes since the producer was re-created for ``cause``."""

    def __init__(self, cause: str, group: str, patience: float = _PATIENCE_S) -> None:
        self.cause = cause
        self.group = group
        self.since = time.monotonic()
        self.give_up = self.since + patience
        self.attempts = 0

    def read_offsets(
        self, consumer: Consumer, partitions: list[TopicPartition], fallback: dict[TP, int]
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
        if time.monotonic() >= self.give_up:
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in query)
            raise EokafkaError(
                f"could not read the committed offsets of group {self.group!r} for {names} "
                f"within {self.give_up - self.since:.0f} s ({problem}); the worker stops rather "
                "than guess where to resume: check that the brokers at bootstrap_servers are "
                "reachable"
            )
        log.warning(
            "reading the committed offsets of group %r failed (%s); inputs stay paused, "
            "retrying (attempt %d)",
            self.group, problem, self.attempts,
        )  # fmt: skip
        return None

    def attempt(
        self,
        consumer: Consumer,
        assignment: list[TopicPartition],
        fallback: dict[TP, int],
        tasks: Tasks,
    ) -> list[TopicPartition] | None:
        """Seek to the committed offsets and start the stores' catch-up; None: not yet.

        The inputs were paused when the re-sync began; on success they are resumed, except
        those of tasks whose stores now restore (paused until they have caught up) or that
        wait for a co-partitioned input.
        """
        found = self.read_offsets(consumer, assignment, fallback)
        if found is None:
            return None
        for tp in found:
            consumer.seek(tp)
        try:
            restoring = tasks.resync()
        except KafkaException as exc:  # the changelogs' end offsets, not known yet
            log.warning("re-sync: the stores' catch-up can't start yet (%s); retrying", exc)
            return None
        if assignment:
            consumer.resume(assignment)
        if restoring:
            consumer.pause(restoring)
        log.warning(
            "re-synced after the producer was re-created (%s) in %.2f s: sought to the group's "
            "committed offsets %s; %d store(s) catching up from their changelogs",
            self.cause,
            time.monotonic() - self.since,
            ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in found) or "-",
            len(tasks.state.restoring) if tasks.state is not None else 0,
        )
        return found
