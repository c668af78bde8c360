"""The global table reader: every partition of every global table's topic, into its store.

One per worker, built in wiring.py and driven by the worker loop, as Kafka Streams'
GlobalStreamThread and GlobalStateManagerImpl do it: at start, before the worker joins its
group (so before any task processes a record), every partition is read from the beginning
to the end offset it had then; afterwards the loop polls the consumer without waiting
between batches, so a table follows its topic within a step or two. The topic is the
table's changelog: nothing is written for it, and an in-memory store is restored in full
at every start. The consumer is assign-only and read_committed, so a transactional
producer's aborted records never reach a table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from itertools import groupby

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from eokafka.errors import EokafkaError, MissingTopicError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.topics import TopicGuard
from eokafka.state import GlobalStore
from eokafka.topology import GlobalTable

log = logging.getLogger("eokafka.global")
_BATCH = 10_000
_RESTORE_POLL_S = 0.1
_END_QUERY_S = 30.0
_REPORT_S = 30.0  # a restore that takes longer says where it is, this often
TP = tuple[str, int]


class GlobalTables:
    """The app's global tables on this worker: their stores and the one consumer feeding them."""

    def __init__(
        self,
        tables: dict[str, GlobalTable],
        make_consumer: Callable[[], Consumer],
        metrics: WorkerMetrics,
    ) -> None:
        self.tables = tables
        self.metrics = metrics
        self.stores = {
            name: GlobalStore(name, t.key_serde, t.value_serde) for name, t in tables.items()
        }
        self._by_topic = {t.topic: self.stores[name] for name, t in tables.items()}
        self._make_consumer = make_consumer
        self._consumer: Consumer | None = None

    def restore(self, topics: TopicGuard, stopping: Callable[[], bool]) -> None:
        """Assign every partition from its beginning and read each to the end it has now
        (read_committed: its last stable offset, as Kafka Streams' endOffsets).

        Returns early (tables half-read) only when ``stopping()``: the worker then leaves
        without processing anything."""
        counts: dict[str, int] = {}
        for name, table in self.tables.items():
            count = topics.partitions(table.topic)
            if count is None:
                raise MissingTopicError(
                    f"global table {name!r}: topic {table.topic!r} does not exist; create it "
                    "(and write the table's records to it) before starting the app"
                )
            counts[table.topic] = count
        consumer = self._consumer = self._make_consumer()
        tps = [(topic, p) for topic, count in counts.items() for p in range(count)]
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in tps])
        ends: dict[TP, int] = {}
        for t, p in tps:
            _low, high = consumer.get_watermark_offsets(TopicPartition(t, p), _END_QUERY_S)
            ends[(t, p)] = high
        left = {tp for tp in tps if ends[tp] > 0}
        started = reported = time.monotonic()
        applied = 0
        while left and not stopping():
            for tp, (position, records, at_end) in self._step(_RESTORE_POLL_S).items():
                applied += records
                if at_end or position >= ends[tp]:
                    left.discard(tp)
            if time.monotonic() - reported > _REPORT_S:
                reported = time.monotonic()
                waiting = ", ".join(f"{t}[{p}] (end {ends[(t, p)]})" for t, p in sorted(left))
                log.info("restoring global tables: still reading %s", waiting)
        if not left:
            log.info(
                "restored global tables %s: %d records in %.2fs",
                ", ".join(self.tables), applied, time.monotonic() - started,
            )  # fmt: skip

    def poll(self) -> None:
        """Apply what arrived since the last step, without waiting for more."""
        if self._consumer is not None:
            self._step(0.0)

    def _step(self, timeout: float) -> dict[TP, tuple[int, int, bool]]:
        """One batch into the stores; per partition read: (position reached, records, at
        its end). Only a partition EOF reveals a position past a trailing transaction
        marker, and it is the end of what read_committed can read now."""
        assert self._consumer is not None
        msgs = self._consumer.consume(_BATCH, timeout)
        if not msgs:
            return {}
        reached: dict[TP, tuple[int, int, bool]] = {}
        for topic, run in groupby(msgs, Message.topic):
            store = self._by_topic[topic]
            rows: list[tuple[bytes, bytes | None]] = []
            for msg in run:
                tp = (topic, msg.partition())
                position, count, _ = reached.get(tp, (0, 0, False))
                err = msg.error()
                if err is None:
                    key = msg.key()
                    if key is not None:  # not a row of the table
                        rows.append((key, msg.value()))
                    reached[tp] = (max(position, msg.offset() + 1), count + 1, False)
                elif err.code() == KafkaError._PARTITION_EOF:
                    reached[tp] = (max(position, msg.offset()), count, True)
                else:
                    self._error(tp, msg, err)
            if rows:
                store.apply(rows)
                self.metrics.global_records.labels(store.name).inc(len(rows))
                self.metrics.global_keys.labels(store.name).set(len(store))
        return reached

    def _error(self, tp: TP, msg: Message, err: KafkaError) -> None:
        if err.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
            raise EokafkaError(
                f"global table topic {tp[0]}[{tp[1]}]: offset {msg.offset()} is out of range "
                f"({err.str()}): records were deleted before this worker read them; a global "
                "table's topic should be compacted (cleanup.policy=compact). Restart the "
                "worker to read the table anew"
            )
        log.warning("global table topic %s[%d]: %s", tp[0], tp[1], err.str())

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
