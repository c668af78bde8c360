"""Deletes repartition records the app has committed past (DeleteRecords), now and then.

Repartition topics are created with infinite retention (a lagging app must never find its
re-keyed records deleted under it), so the app itself deletes what it no longer needs: after
a successful commit, every record below the committed position of a repartition partition
is done for good, since any rewind, replay or new owner starts at the committed offset or
later (a partition that moved to another worker keeps what this one committed, so deleting
below it stays safe). Purges are asynchronous (the worker loop never waits for them) and
bounded in rate: at most one DeleteRecords request per ``interval`` per worker, and only for
partitions whose committed position moved since the last one.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from eokafka.runtime.commit.participant import Offsets, Participant

log = logging.getLogger("eokafka.purge")
TP = tuple[str, int]
_TIMEOUT = 30.0


class RepartitionPurge(Participant):
    """A commit participant: after each commit, maybe one DeleteRecords request."""

    def __init__(self, admin: AdminClient, topics: set[str], interval: float) -> None:
        self.admin = admin
        self.topics = frozenset(topics)
        self.interval = interval
        self._committed: dict[TP, int] = {}  # highest committed position seen
        self._purged: dict[TP, int] = {}  # what was last asked to be deleted below
        self._due = time.monotonic() + interval
        self._in_flight: dict[TP, Future[object]] = {}

    def committed(self, offsets: Offsets) -> None:
        """After a successful commit, with the offsets it committed."""
        if not self.topics:
            return
        committed = self._committed
        for tp in offsets:
            key = (tp.topic, tp.partition)
            if tp.topic in self.topics and tp.offset > committed.get(key, 0):
                committed[key] = tp.offset
        now = time.monotonic()
        if now < self._due or self._in_flight:
            return
        todo = [
            TopicPartition(t, p, offset)
            for (t, p), offset in self._committed.items()
            if offset > self._purged.get((t, p), 0)
        ]
        if not todo:
            return
        self._due = now + self.interval
        try:
            futures = self.admin.delete_records(todo, request_timeout=_TIMEOUT)
        except KafkaException as exc:
            log.warning("could not purge repartition records: %s", exc)
            return
        for tp, future in futures.items():
            key = (tp.topic, tp.partition)
            self._purged[key] = self._committed[key]
            self._in_flight[key] = future
            future.add_done_callback(lambda f, key=key: self._done(key, f))

    def _done(self, key: TP, future: Future[object]) -> None:
        self._in_flight.pop(key, None)
        exc = future.exception()
        if exc is not None:
            self._purged.pop(key, None)  # try again next time
            log.warning("purging repartition topic %s[%d] failed: %s", *key, exc)
