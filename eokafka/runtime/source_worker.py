"""Runs an app's sources: records from outside into Kafka, exactly once (invariant 12).

One transactional producer per app (``transactional.id = <application id>-source``), so a
second process running the same sources fences the first instead of producing the same
records twice. Each transaction holds the records a source read and its position after
them, written to the compacted ``<application id>-source-offsets`` topic (key: the source
name). On start and after any abort the positions are read back from that topic,
read_committed: the truth is what Kafka committed, never what the worker remembers.

Records that can't be read or sent go to the app's ``on_error`` policy like any other
(source_records.py); a source's position moves past them in the same transaction.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from eokafka.config import Settings, admin_config, producer_config
from eokafka.errors import ConfigError, EokafkaError
from eokafka.metrics import TxnTally, WorkerMetrics
from eokafka.runtime.clients import kafka_admin
from eokafka.runtime.limits import OutputLimits
from eokafka.runtime.outputs import Outputs
from eokafka.runtime.source_records import SourceSender
from eokafka.runtime.topics import TopicGuard
from eokafka.runtime.transactions import TransactionAborted, Transactions
from eokafka.source import Feed, Position
from eokafka.topology import Topology

log = logging.getLogger("eokafka.sources")
_IDLE = 0.1
_RPC_TIMEOUT = 30.0


def offsets_topic(application_id: str) -> str:
    return f"{application_id}-source-offsets"


class SourceWorker:
    """The worker of a source-only app: poll every source, produce, commit on time."""

    def __init__(
        self, topology: Topology, settings: Settings, instance_id: str, metrics: WorkerMetrics
    ) -> None:
        topology.validate()
        if settings.processes > 1:
            raise ConfigError(
                f"processes={settings.processes}: an app's sources run in one process (they share "
                "the transactional.id <application id>-source, and a second would fence the first)"
            )
        self.feeds: list[Feed] = list(topology.feeds.values())
        self.settings = settings
        self.metrics = metrics
        self.topics = TopicGuard(kafka_admin(admin_config(settings)), settings.create_topics)
        self.offsets_topic = offsets_topic(settings.application_id)
        self.stopping = False
        self.txn: Transactions | None = None
        self.pending = 0
        self.tally = TxnTally()
        limits = OutputLimits(producer_config(settings, "source"), self.topics.configs)
        outputs = Outputs(settings, [], limits, self.tally, self._txn)
        self.sender = SourceSender(settings, limits, self.tally, outputs.produce)

    def _txn(self) -> Transactions:
        assert self.txn is not None
        return self.txn

    def stop(self, *_: Any) -> None:
        self.stopping = True

    def run(self) -> None:
        for feed in self.feeds:
            self.topics.ensure(feed.topic, "source output")
        self.topics.ensure(
            self.offsets_topic, "source offsets", 1, internal=True,
            config={"cleanup.policy": "compact"},
        )  # fmt: skip
        if self.settings.on_error == "dead-letter":
            self.topics.ensure(self.settings.dlq_topic, "dead-letter", internal=True)
        opened: list[Feed] = []
        try:
            self.txn = Transactions(self.settings, "source", self.metrics)
            for feed in self.feeds:
                feed.connector.open(self.settings.application_id)
                opened.append(feed)
            self._seek_all()
            log.info("sources running: %s (transactional.id=%s)",
                     ", ".join(f"{f.connector.name} -> {f.topic}" for f in self.feeds),
                     self.txn.transactional_id)  # fmt: skip
            while not self.stopping:
                self._step()
            if self.txn.open:
                self._commit()
            self.txn.close()
        except BaseException:
            self._leave_after_error(opened)
            raise
        for feed in opened:
            feed.connector.close()
        log.info("sources stopped")

    def _leave_after_error(self, opened: list[Feed]) -> None:
        """End the open transaction now rather than at its timeout, close the connectors;
        never mask the error that ended the run."""
        if self.txn is not None and self.txn.open:
            try:
                self.txn.abort("error", replace=False)
            except (EokafkaError, KafkaException) as exc:
                log.warning("could not abort on the way out: %s", exc)
        for feed in opened:
            try:
                feed.connector.close()
            except Exception:  # noqa: BLE001
                log.exception("source %s: close after an error failed", feed.connector.name)

    def _seek_all(self) -> None:
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
            consumer.assign([TopicPartition(self.offsets_topic, 0, OFFSET_BEGINNING)])
            # This producer's init_transactions ended any transaction left open, so the end
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

    def _step(self) -> None:
        """Poll every source, produce, commit when due; one record per transaction while
        the sender narrows a refused batch down to its culprit."""
        assert self.txn is not None
        got = 0
        for feed in self.feeds:
            narrowing = self.sender.narrowing
            items, position = feed.connector.poll(1 if narrowing else self.settings.batch_size)
            if not items:
                continue
            self.txn.begin()
            try:
                for item in items:
                    self.sender.send(feed, item)
                self.sender.position(feed, self.offsets_topic, position)
            except KafkaException as exc:
                try:
                    self.txn.fail(exc.args[0], "produce")
                except TransactionAborted as aborted:
                    self._after_abort(str(aborted))
                return
            self.txn.producer.poll(0)
            got += len(items)
            if narrowing:
                self._commit()  # an abort seeks every source back: the next ones go on
            else:
                self.pending += len(items)
        if self.txn.open and (
            self.pending >= self.settings.commit_every or time.monotonic() >= self.txn.deadline
        ):
            self._commit()
        elif not got:
            time.sleep(_IDLE)

    def _commit(self) -> None:
        assert self.txn is not None
        try:
            self.txn.commit([], None)
        except TransactionAborted as aborted:
            self._after_abort(str(aborted))
            return
        self.sender.committed()
        self.metrics.publish(self.tally)
        self.tally.clear()
        self.pending = 0

    def _after_abort(self, why: str) -> None:
        """Back to the positions Kafka committed (the abort's records are never read)."""
        log.warning("source transaction aborted (%s); re-reading committed positions", why)
        self.pending = 0
        self.tally.clear()
        self.sender.aborted()
        self._seek_all()
