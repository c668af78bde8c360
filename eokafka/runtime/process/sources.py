"""Runs an app's sources: records from outside into Kafka, exactly once (invariant 12).

One transactional producer per app (``transactional.id = <application id>-source``), so a
second process running the same sources fences the first instead of producing the same
records twice. Each transaction holds the records a source read and its position after
them, written to the compacted ``<application id>-source-offsets`` topic (key: the source
name). On start and after any abort the positions are read back from that topic,
read_committed: the truth is what Kafka committed, never what the worker remembers.

The loop runs on the same parts as the worker's: the transaction owner commits and aborts
(commit/owner.py), the record collector produces (commit/collector.py). Records that can't
be read or sent go to the app's ``on_error`` policy like any other (commit/source_records.py);
a source's position moves past them in the same transaction. After an abort or a producer
re-creation the positions are read back from Kafka (the ``Feeds`` participant).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from eokafka.client_configs import admin_config, producer_config
from eokafka.config import Settings
from eokafka.errors import ConfigError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.clients import KAFKA, Clients
from eokafka.runtime.commit.collector import RecordCollector
from eokafka.runtime.commit.errors import TransactionAborted
from eokafka.runtime.commit.limits import OutputLimits
from eokafka.runtime.commit.owner import TransactionOwner
from eokafka.runtime.commit.participant import Participant
from eokafka.runtime.commit.source_records import SourceSender
from eokafka.runtime.topics import TopicGuard
from eokafka.source import Feed, Position
from eokafka.topology import Topology

log = logging.getLogger("eokafka.sources")
_IDLE = 0.1
_RPC_TIMEOUT = 30.0


def offsets_topic(application_id: str) -> str:
    return f"{application_id}-source-offsets"


class Feeds(Participant):
    """The app's sources as a participant: after an abort or a producer re-creation, each
    continues from the position Kafka committed, never from the one it reached."""

    def __init__(self, feeds: list[Feed], settings: Settings, topic: str) -> None:
        self.feeds = feeds
        self.settings = settings
        self.topic = topic

    def rewind(self) -> None:
        log.warning("source transaction aborted; re-reading committed positions")
        self.seek_all()

    def resync(self) -> bool:
        self.seek_all()
        return True

    def seek_all(self) -> None:
        positions = self._read_positions()
        for feed in self.feeds:
            feed.connector.seek(positions.get(feed.connector.name))

    def _read_positions(self) -> dict[str, Position]:
        """The latest committed position of every source, read_committed to the end."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": f"{self.settings.application_id}-source-reader-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
        try:
            positions: dict[str, Position] = {}
            consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
            # The producer's init_transactions ended any transaction left open, so the end
            # of the log (EOF) is the last committed position.
            while True:
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return positions
                    raise KafkaException(err)
                if msg.key() is not None:
                    positions[msg.key().decode()] = json.loads(msg.value())
        finally:
            consumer.close()


class SourceWorker:
    """The worker of a source-only app: poll every source, produce, commit on time."""

    def __init__(
        self,
        topology: Topology,
        settings: Settings,
        instance_id: str,
        metrics: WorkerMetrics,
        clients: Clients = KAFKA,
    ) -> None:
        topology.validate()
        if settings.processes > 1:
            raise ConfigError(
                f"processes={settings.processes}: an app's sources run in one process (they share "
                "the transactional.id <application id>-source, and a second would fence the first)"
            )
        self.settings = settings
        self.clients = clients
        self.topics = TopicGuard(clients.admin(admin_config(settings)), settings.create_topics)
        self.offsets_topic = offsets_topic(settings.application_id)
        self.stopping = False
        self.owner = TransactionOwner(settings, "source", metrics, clients)
        limits = OutputLimits(producer_config(settings, "source"), self.topics.configs)
        collector = RecordCollector(settings, self.owner, limits, [])
        self.sender = SourceSender(settings, limits, self.owner.tally, collector.produce)
        self.feeds = Feeds(list(topology.feeds.values()), settings, self.offsets_topic)
        self.owner.register(self.sender)  # judges the deliveries of an aborted transaction
        self.owner.register(self.feeds)  # then the sources go back to what Kafka committed

    def stop(self, *_: Any) -> None:
        self.stopping = True

    def run(self) -> None:
        feeds = self.feeds.feeds
        for feed in feeds:
            self.topics.ensure(feed.topic, "source output")
        self.topics.ensure(
            self.offsets_topic, "source offsets", 1, internal=True,
            config={"cleanup.policy": "compact"},
        )  # fmt: skip
        if self.settings.on_error == "dead-letter":
            self.topics.ensure(self.settings.dlq_topic, "dead-letter", internal=True)
        opened: list[Feed] = []
        owner = self.owner
        try:
            # A fenced source producer means a second process runs these sources: stop.
            owner.start(list, lambda: None, lambda: True)
            for feed in feeds:
                feed.connector.open(self.settings.application_id)
                opened.append(feed)
            self.feeds.seek_all()
            log.info("sources running: %s (transactional.id=%s)",
                     ", ".join(f"{f.connector.name} -> {f.topic}" for f in feeds),
                     owner.transactional_id)  # fmt: skip
            while not self.stopping:
                self.step()
            if owner.open:
                owner.commit()
            owner.close(clean=True)
        except BaseException:
            self._leave_after_error(opened)
            raise
        for feed in opened:
            feed.connector.close()
        log.info("sources stopped")

    def _leave_after_error(self, opened: list[Feed]) -> None:
        """End the open transaction now rather than at its timeout, close the connectors;
        never mask the error that ended the run."""
        self.owner.close(clean=False)
        for feed in opened:
            try:
                feed.connector.close()
            except Exception:  # noqa: BLE001
                log.exception("source %s: close after an error failed", feed.connector.name)

    def step(self) -> None:
        """Poll every source, produce, commit when due; one record per transaction while
        the sender narrows a refused batch down to its culprit."""
        owner = self.owner
        if owner.resyncing and not owner.try_resync():
            return
        got = 0
        for feed in self.feeds.feeds:
            narrowing = self.sender.narrowing
            items, position = feed.connector.poll(1 if narrowing else self.settings.batch_size)
            if not items:
                continue
            owner.begin()
            try:
                try:
                    for item in items:
                        self.sender.send(feed, item)
                    self.sender.position(feed, self.offsets_topic, position)
                except KafkaException as exc:
                    owner.fail(exc.args[0], "produce")
            except TransactionAborted as aborted:
                owner.abandon(aborted)
                return
            owner.producer.poll(0)  # delivery reports of what the broker refused
            got += len(items)
            if narrowing:
                owner.commit()  # an abort seeks every source back: the next ones go on
            else:
                owner.records += len(items)
        due = owner.records >= self.settings.commit_every
        if owner.open and (due or self.clients.clock() >= owner.deadline):
            owner.commit()
        elif not got:
            time.sleep(_IDLE)
