"""Sinks outside Kafka, made exactly-once with the Kafka commit as the decision (invariant 12).

Every sink of the app takes part in the commit through a :class:`SinkSet`, a participant of
the transaction owner (owner.py), at these steps:

* ``prepare(offsets)`` before the Kafka commit: each sink makes its writes durable but
  invisible (PostgreSQL ``PREPARE TRANSACTION``, an fsynced part file) under the id of this
  Kafka transaction, which also goes into the committed offsets' metadata;
* ``committed`` after the Kafka commit succeeded: make them visible (``COMMIT PREPARED``,
  rename);
* ``aborted`` after an abort: drop what was not prepared;
* ``recover(partitions)`` on assignment, and at ``rewind`` and ``resync``: resolve each
  prepared write that covers these partitions (or that this instance left before a restart)
  by reading the group's committed offsets from the coordinator. A write is finished if the
  committed offset metadata names its transaction id, and undone otherwise. The metadata is
  Kafka's own record of which transaction committed last, so every worker that looks decides
  the same, and the rule is exact because a worker always resolves its prepared writes before
  its next commit. Sinks that keep offsets in their own database instead return the
  positions to seek to.

Rows written by a processor (``ctx.sink(name).write(row)``) are checked and converted at once
(a row that can't fit raises inside the processor, so the poison policy sees its record),
staged per record, and handed to the sink only when the processor returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Message, TopicPartition

from eokafka.errors import ConfigError
from eokafka.runtime.commit.errors import RecordFailed
from eokafka.runtime.commit.participant import Abort, Offsets, Participant
from eokafka.sink import TP, Committed, RecordRefused, Sink, SinkUnavailable, SinkWriter
from eokafka.topology import Topology

log = logging.getLogger("eokafka.sinks")
_RPC_TIMEOUT = 30.0


def check_sinks(topology: Topology) -> None:
    """A sink that keeps its offsets in its database can't share a commit with stores."""
    keeping = [n for n, s in topology.sinks.items() if getattr(s, "keeps_offsets", 0)]
    if keeping and topology.stores:
        raise ConfigError(
            f"sink {keeping[0]!r} keeps the offsets in its database, but the app has state "
            f"stores ({', '.join(sorted(topology.stores))}), whose changelog is "
            "written in the Kafka transaction: use the sink's two-phase mode"
        )


class SinkSet(Participant):
    """The sinks of one worker and the id of the Kafka transaction they prepare under."""

    def __init__(
        self,
        sinks: Mapping[str, Sink],
        application_id: str,
        instance_id: str,
        committed: Callable[[list[TopicPartition]], list[TopicPartition]],
        seek: Callable[[TopicPartition], None],
        assignment: Callable[[], list[TopicPartition]],
        refused: Callable[[RecordRefused], None],
        kafka_writes: Callable[[], dict[str, int]] = dict,
    ) -> None:
        """``committed`` reads the group's committed offsets, ``seek`` moves an input,
        ``assignment`` lists the inputs, ``refused`` hands a refused row's record to the
        poison policy, ``kafka_writes`` counts the open transaction's Kafka records."""
        self.sinks = dict(sinks)
        self.application_id = application_id
        self.instance_id = instance_id
        self._prefix = f"{application_id}:{instance_id}:{int(time.time() * 1000)}"
        self._seq = 0
        self._committed = committed
        self._seek = seek
        self._assignment = assignment
        self._refused = refused
        self._kafka_writes = kafka_writes
        self._own_offsets = [s.name for s in self.sinks.values() if getattr(s, "keeps_offsets", 0)]
        self._dirty: set[str] = set()  # sinks with rows in the open transaction
        self._prepared: list[Sink] = []
        self.staged: list[tuple[Sink, Any]] = []
        self._opened = False

    def writer(self, name: str) -> SinkWriter | None:
        sink = self.sinks.get(name)
        if sink is None:
            return None
        self._open()
        return SinkWriter(sink, self.staged)

    def _open(self) -> None:
        if not self._opened:
            for sink in self.sinks.values():
                sink.open(self.application_id, self.instance_id)
            self._opened = True

    def accept(self, msg: Message) -> None:
        """The processor returned: its staged rows join the open transaction."""
        where = (msg.topic(), msg.partition(), msg.offset())
        for sink, row in self.staged:
            sink.add(where, row)
            self._dirty.add(sink.name)
        self.staged.clear()

    def prepare(self, offsets: Offsets) -> Offsets:
        """Prepare every sink with rows under this transaction's id; the offsets to commit.

        The returned offsets carry the transaction id as their metadata. A sink that lost its
        connection makes the Kafka transaction abort (then rewind and replay); a row a sink
        refused sends its record to the poison policy, then aborts and replays.
        """
        positions = offsets
        if not self.sinks:
            return positions
        self._seq += 1
        txn_id = f"{self._prefix}:{self._seq}"
        positions = [_tagged(tp, txn_id) for tp in positions]
        if not self._dirty:
            return positions
        if self._own_offsets:
            self._check_only_sink_writes()
        offsets = {(tp.topic, tp.partition): tp.offset for tp in positions}
        try:
            for name in sorted(self._dirty):
                sink = self.sinks[name]
                self._prepared.append(sink)
                sink.prepare(txn_id, offsets)
        except SinkUnavailable as exc:
            self._dirty.clear()
            raise RecordFailed(
                "sink-unavailable", f"sink unavailable before the commit, replaying: {exc}"
            ) from exc
        except RecordRefused as refused:
            self._dirty.clear()
            self._refused(refused)
            raise RecordFailed("poison-sink", str(refused)) from refused
        self._dirty.clear()
        return positions

    def _check_only_sink_writes(self) -> None:
        """A sink keeping its own offsets commits first: Kafka output could then be lost."""
        written = {t: n for t, n in self._kafka_writes().items() if n}
        if written:
            topic = sorted(written)[0]
            raise ConfigError(
                f"sink {self._own_offsets[0]!r} keeps the offsets in its database, but the "
                f"transaction also writes to Kafka ({written[topic]} records for {topic!r}, "
                "outputs or dead letters), which an abort after the database commit would "
                "lose: use the sink's two-phase mode"
            )

    def committed(self, offsets: Offsets) -> None:
        """The Kafka transaction committed: make the prepared writes visible."""
        for sink in self._prepared:
            sink.finish()
        self._prepared.clear()

    def aborted(self, abort: Abort) -> None:
        self.staged.clear()
        self._dirty.clear()
        self._prepared.clear()
        for sink in self.sinks.values():
            sink.abort()

    def rewind(self) -> None:
        self.recover(self._assignment())

    def resync(self) -> bool:
        self.recover(self._assignment())
        return True

    def recover(
        self, partitions: list[TopicPartition], committed: list[TopicPartition] | None = None
    ) -> None:
        """Resolve prepared writes by the group's committed offsets (``committed``: those
        just read, with their metadata); seek sink-kept offsets."""
        if not self.sinks:
            return
        self._open()
        wanted = {(tp.topic, tp.partition) for tp in partitions}
        doubts = {
            (name, txn_id): tps
            for name, sink in self.sinks.items()
            for txn_id, tps in sink.in_doubt(wanted, self.instance_id).items()
        }
        if doubts:
            needed = sorted(set().union(*doubts.values()))
            known = {} if committed is None else _by_partition(committed)
            missing = [TopicPartition(t, p) for t, p in needed if (t, p) not in known]
            committed_by_tp = {**known, **self.read_committed(missing)}
            for (name, txn_id), tps in sorted(doubts.items()):
                commit = any(
                    (c := committed_by_tp.get(tp)) is not None and c.txn_id == txn_id
                    for tp in tps
                )
                log.info(
                    "sink %s: %s prepared transaction %s (covers %s)",
                    name,
                    "committing" if commit else "rolling back",
                    txn_id,
                    ", ".join(f"{t}[{p}]" for t, p in sorted(tps)),
                )
                self.sinks[name].resolve(txn_id, commit)
        for sink in self.sinks.values():
            for (topic, partition), offset in sink.positions(wanted).items():
                self._seek(TopicPartition(topic, partition, offset))

    def read_committed(self, tps: list[TopicPartition]) -> dict[TP, Committed]:
        """Committed offsets with their transaction ids, from the group coordinator."""
        if not tps:
            return {}
        return _by_partition(self._committed(tps))

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.close()


def _by_partition(tps: list[TopicPartition]) -> dict[TP, Committed]:
    return {
        (tp.topic, tp.partition): Committed(tp.offset, tp.metadata or "")
        for tp in tps
        if tp.error is None
    }


def _tagged(tp: TopicPartition, txn_id: str) -> TopicPartition:
    """``tp`` with the transaction id as its commit metadata, keeping its leader epoch."""
    if tp.leader_epoch is None:
        return TopicPartition(tp.topic, tp.partition, tp.offset, txn_id)
    return TopicPartition(tp.topic, tp.partition, tp.offset, txn_id, tp.leader_epoch)
