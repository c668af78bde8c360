"""The worker loop: consume a batch, process it inside the open transaction, commit on time.

One consumer and one transactional producer per worker process (KIP-447). Every commit
sends the consumed positions with the consumer's group metadata in the same transaction as
the outputs. An abort rewinds every assigned partition to the offset last committed, which
the worker tracks itself: set at assignment (committed offset, or the reset position made
explicit) and advanced by every successful commit. After the producer was re-created the
worker trusts nothing it remembers: it re-reads the committed offsets from the group
coordinator and brings its stores to their changelogs' committed end (_start_resync).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)

from eokafka.app_topics import create_missing
from eokafka.config import (
    Settings,
    admin_config,
    consumer_config,
    producer_config,
    rebalance_protocol,
)
from eokafka.context import ProcessorContext
from eokafka.errors import (
    EokafkaError,
    MissingTopicError,
)
from eokafka.metrics import TxnTally, WorkerMetrics
from eokafka.record import Record
from eokafka.runtime.abort_loop import AbortLoop
from eokafka.runtime.bounded import BoundedRun, Bounds
from eokafka.runtime.clients import KAFKA, Clients, config_errors
from eokafka.runtime.group import consumer_error, successor_exists
from eokafka.runtime.limits import OutputLimits
from eokafka.runtime.outputs import Outputs
from eokafka.runtime.poison_policy import PoisonPolicy, RecordFailed
from eokafka.runtime.purge import RepartitionPurge
from eokafka.runtime.rebalance import Rebalance
from eokafka.runtime.recovery import PendingResync
from eokafka.runtime.sinks import SinkSet
from eokafka.runtime.standby import StandbyReplicas
from eokafka.runtime.stores import StoreTasks
from eokafka.runtime.tasks import Tasks, spans_topics
from eokafka.runtime.topics import TopicGuard
from eokafka.runtime.transactions import TransactionAborted, Transactions
from eokafka.serdes import is_identity
from eokafka.sink import RecordRefused
from eokafka.topology import Source, Topology

log = logging.getLogger("eokafka.worker")
_IDLE_POLL = 0.1
Decoder = Callable[[bytes | None], Any] | None
Route = tuple[Source, Decoder, Decoder]
TP = tuple[str, int]


def _compile(topology: Topology) -> dict[str, list[Route]]:
    """Routing table; identity serdes become None so the loop skips the call."""
    return {
        topic: [
            (
                s,
                None if is_identity(s.key_serde) else s.key_serde.deserialize,
                None if is_identity(s.value_serde) else s.value_serde.deserialize,
            )
            for s in sources
        ]
        for topic, sources in topology.by_topic().items()
    }


class Worker:
    def __init__(
        self,
        topology: Topology,
        settings: Settings,
        instance_id: str,
        metrics: WorkerMetrics,
        bounds: Bounds | None = None,
        clients: Clients = KAFKA,
    ) -> None:
        topology.validate()
        self.settings = settings
        self.instance_id = instance_id
        self.metrics = metrics
        self.topology = topology
        self.bound = BoundedRun(bounds, self, clients) if bounds is not None else None
        self.clients = self.bound.clients if self.bound is not None else clients
        self.routes = _compile(topology)
        # With one input topic, consumed records are counted once per batch.
        self.only_topic: str | None = topology.topics[0] if len(topology.topics) == 1 else None
        self.admin = self.clients.admin(admin_config(settings))
        self.topics = TopicGuard(self.admin, settings.create_topics)
        self.limits = OutputLimits(producer_config(settings, instance_id), self.topics.configs)
        self.abort_loop = AbortLoop(metrics)
        self.purge = RepartitionPurge(
            self.admin, set(topology.internal_topics), settings.purge_interval_ms / 1000
        )
        self.state = (
            StoreTasks(
                settings, topology, metrics, self.topics, self.clients, self.limits.record_limit
            )
            if topology.stores
            else None
        )
        self.tally = TxnTally()
        self.ctx = ProcessorContext(
            self._output_topic,
            self.state.store if self.state is not None else None,
            self.tally.dropped,
            self.tally.late,
            self.state.stores if self.state is not None else None,
        )
        self.sinks = SinkSet.for_worker(self)
        # Warm copies of stores of partitions other workers own (num_standby_replicas).
        self.standby = StandbyReplicas.for_worker(self)
        # Per task: its inputs, stores, the offsets of the last commit this worker knows
        # succeeded (cheap rewinds after a plain abort; re-read from the broker after a
        # producer reset) and where the auto offset reset put never committed partitions.
        self.tasks = Tasks(topology, self.state, self.clients.clock)
        self.rebalance = Rebalance(self, rebalance_protocol(settings))
        # Owed since the producer was re-created: inputs stay paused until it is done.
        self.resync: PendingResync | None = None
        self.outputs = Outputs(settings, self.ctx.pending, self.limits, self.tally, self._txn)
        self.poison = PoisonPolicy(
            settings, self.tally, self.limits, self.abort_loop, self._txn, self.outputs.produce
        )
        self.records_in_txn = 0
        self.stopping = False
        self.txn: Transactions | None = None
        self.consumer: Consumer | None = None

    @property
    def assignment(self) -> list[TopicPartition]:
        return self.tasks.assignment

    @property
    def committed(self) -> dict[TP, int]:
        return self.tasks.committed()

    # -- lifecycle -----------------------------------------------------------------------

    def stop(self, *_: Any) -> None:
        """Ask the loop to commit and leave; safe to call from a signal handler."""
        self.stopping = True

    def run(self) -> None:
        self.start()
        self.loop()

    def start(self) -> None:
        """Check or create the topics, make the clients and join the group."""
        if self.settings.create_topics:
            create_missing(self.topics, self.topology, self.settings.partitions)
        for topic, like in self.topology.internal_topics.items():
            partitions = self.topics.partitions(like)
            if partitions is None:
                raise MissingTopicError(f"topic {like!r} (which {topic!r} follows) does not exist")
            self.topics.ensure_repartition(topic, partitions)
        for topic in self.topology.topics:
            self.topics.ensure(topic, "input")
        if self.state is not None:
            self.state.ensure_changelogs()
        if self.settings.on_error == "dead-letter" or self.topology.dead_letters:
            self.topics.ensure(self.settings.dlq_topic, "dead-letter", internal=True)
            self.ctx._known_topics.add(self.settings.dlq_topic)
        with config_errors():
            self.txn = Transactions(
                self.settings,
                self.instance_id,
                self.metrics,
                stateful=self.state is not None,
                replaced=self._replaced,
                clients=self.clients,
            )
            conf = consumer_config(self.settings, self.instance_id, spans_topics(self.topology))
            self.consumer = self.clients.consumer(conf)
        self.clients.release_predecessor(self.settings, self.instance_id, self.admin)
        self.consumer.subscribe(
            self.topology.topics,
            on_assign=self.rebalance.on_assign,
            on_revoke=self.rebalance.on_revoke,
            on_lost=self.rebalance.on_lost,
        )
        log.info(
            "worker running: group.id=%s transactional.id=%s topics=%s rebalancing=%s",
            self.settings.application_id,
            self.txn.transactional_id,
            ",".join(self.topology.topics),
            self.rebalance.protocol,
        )

    def loop(self) -> None:
        """Step until asked to stop, then commit and leave."""
        assert self.txn is not None
        clean = False
        try:
            while not self.stopping:
                self._step()
                if self.bound is not None and self.bound.finished():
                    self.stopping = True
            if self.txn.open:
                self._commit()
            clean = True
        finally:
            self._close(clean)

    def _close(self, clean: bool) -> None:
        """Leave without an open transaction; after an error, never mask it with another."""
        assert self.txn is not None and self.consumer is not None
        if not clean:
            try:
                self.txn.abort("error", replace=False)
            except (EokafkaError, KafkaException) as exc:
                log.warning("could not abort on the way out: %s", exc)
                self.txn.open = False
        if self.standby is not None:
            self.standby.close()  # first: stores leaving in the revoke below are not kept
        member_id = self.consumer.memberid() if clean else None
        try:
            self.consumer.close()  # a revoke in here commits an open transaction
        except (EokafkaError, KafkaException) as exc:
            if clean:
                raise
            log.warning("consumer close after an error: %s", exc)
        if clean:
            self.clients.leave(self.settings, self.instance_id, member_id)  # stopped on purpose
            self.txn.close()
            self.sinks.close()
        self.tasks.close()
        log.info("worker stopped (%s)", "clean" if clean else "after an error")

    # -- the loop ------------------------------------------------------------------------

    def _step(self) -> None:
        txn = self.txn
        assert txn is not None and self.consumer is not None
        if self.resync is not None and not self._try_resync():
            self._serve_group_while_resyncing()
            return
        if self.standby is not None:
            self.standby.step()
        tasks = self.tasks
        if tasks.restoring:
            if self.state is not None:
                self.state.restore_step()
            ready = tasks.restored()
            if ready:
                self.consumer.resume(ready)
        if tasks.unsettled and self.rebalance.protocol != "eager":  # eager: at assign
            if tasks.settle(self.clients.clock()):
                self.replan_standbys()
        timeout = max(0.0, txn.deadline - self.clients.clock()) if txn.open else _IDLE_POLL
        if tasks.restoring or (self.standby is not None and self.standby.catching_up):
            timeout = 0.0
        cap = self.abort_loop.cap
        size = self.settings.batch_size
        if cap is not None:  # narrowing an abort loop down: fewer records per transaction
            size = max(1, min(size, cap - self.records_in_txn))
        msgs = self.consumer.consume(size, timeout)
        if msgs:
            txn.begin()
            try:
                self._process(msgs)
            except RecordFailed as failed:
                self._abort_and_rewind(failed.reason, str(failed))
                return
            except TransactionAborted as aborted:
                self._after_abort(aborted.reason)
                return
        every = self.settings.commit_every if cap is None else min(cap, self.settings.commit_every)
        if txn.open and (self.records_in_txn >= every or self.clients.clock() >= txn.deadline):
            self._commit()

    def _process(self, msgs: list[Message]) -> None:
        started = time.perf_counter()
        routes = self.routes
        ctx = self.ctx
        pending = ctx.pending
        consumed = self.tally.consumed
        only_topic = self.only_topic
        poison = self.poison
        marks = poison.marks
        stateful = self.state is not None
        staged = self.sinks.staged
        # The common output (one per record, no headers, no guarded topic) is produced here;
        # everything else, and any produce() that raises, goes through Outputs.send.
        guarded = self.limits.guarded
        produce = self._txn().producer.produce
        produced = self.tally.produced
        send = self.outputs.send
        # The inline outputs are counted per run of one topic: a Counter update costs more
        # than the rest of the bookkeeping. Any exception out of the loop ends in an abort,
        # which drops the tally.
        run_topic = ""
        run = 0
        if self.abort_loop.cap is not None:
            self.abort_loop.note(msgs)
        new_record = object.__new__
        # One input topic: every message is of that topic, so neither ask nor look it up.
        topic = only_topic
        sources = routes[topic] if topic is not None else []
        n = len(msgs)  # the records among them; errors are rare
        for msg in msgs:
            if msg.error() is not None:
                n -= 1
                self._consumer_error(msg)
                continue
            if only_topic is None:
                topic = msg.topic()
                consumed[topic] += 1
                sources = routes[topic]
            if marks and (topic, msg.partition(), msg.offset()) in marks:
                name, stage, exc = marks[(topic, msg.partition(), msg.offset())]
                poison.apply(msg, name, stage, exc)
                continue
            if stateful:
                ctx.partition = msg.partition()
            for source, kd, vd in sources:
                try:
                    key = msg.key() if kd is None else kd(msg.key())
                    value = msg.value() if vd is None else vd(msg.value())
                except Exception as exc:
                    poison.apply(msg, source.name, "deserialize", exc)
                    continue
                # Record(key, value, msg) without the call of its __init__: 50 ns a record
                record = new_record(Record)
                record.key = key
                record.value = value
                record._msg = msg
                try:
                    source.fn(record, ctx)
                except (EokafkaError, TransactionAborted):
                    pending.clear()
                    raise
                except Exception as exc:
                    pending.clear()
                    self.sinks.staged.clear()
                    if stateful and source.stores and self.settings.on_error != "fail":
                        # Its store writes can't be taken back alone: replay without it.
                        poison.replay_without(msg, source.name, "process", exc)
                    poison.apply(msg, source.name, "process", exc)
                    continue
                if pending:
                    out_topic, out_value, out_key, out_partition, ts, headers = pending[0]
                    if headers is None and len(pending) == 1 and not guarded:
                        if ts is None:
                            ts = msg.timestamp()[1]
                            if ts < 0:
                                ts = 0
                        try:
                            produce(out_topic, out_value, out_key, out_partition, None, None, ts)
                        except (BufferError, KafkaException):
                            send(msg, source, poison)  # waits, or classifies
                        else:
                            pending.clear()
                            if out_topic != run_topic:
                                if run:
                                    produced[run_topic] += run
                                run_topic = out_topic
                                run = 0
                            run += 1
                    else:
                        send(msg, source, poison)
                if staged:
                    self.sinks.accept(msg)
        if run:
            produced[run_topic] += run
        if only_topic is not None:
            consumed[only_topic] += n
        self.records_in_txn += n
        if n:
            self.metrics.processing_latency.observe((time.perf_counter() - started) / n)
            ts = msgs[0].timestamp()[1]
            if ts > 0:
                self.metrics.e2e_latency.observe(max(0.0, time.time() - ts / 1000))

    def _output_topic(self, topic: str) -> None:
        """First send to a topic: check it exists and read the limits it puts on records."""
        self.topics.ensure(topic, "output")
        self.limits.learn(topic)

    def _txn(self) -> Transactions:
        assert self.txn is not None
        return self.txn

    def _sources_of(self, topic: str) -> str:
        return ",".join(s.name for s, _, _ in self.routes.get(topic, ()))

    def _positions(self) -> dict[TP, int]:
        assert self.consumer is not None
        tps = self.consumer.position(self.assignment) if self.assignment else []
        return {(tp.topic, tp.partition): tp.offset for tp in tps if tp.offset >= 0}

    def replan_standbys(self) -> None:
        """After any change of tasks: standbys only for partitions with no task here."""
        if self.standby is not None:
            self.standby.replan({task.index for task in self.tasks.tasks.values()})

    def _replaced(self) -> bool:
        return successor_exists(self.consumer, self.topics.admin, self.settings, self.instance_id)

    def _consumer_error(self, msg: Message) -> None:
        consumer_error(msg, self.settings.application_id, self.instance_id)

    # -- commit, abort, rewind -----------------------------------------------------------

    def _commit(self, rewind_on_abort: bool = True) -> None:
        assert self.txn is not None and self.consumer is not None
        positions = [
            tp for tp in self.consumer.position(self.assignment) if tp.offset >= 0
        ] if self.assignment else []
        try:
            if self.state is not None:
                self.state.produce_changelogs(self.txn.producer.produce, self.outputs.produce)
            positions = self.sinks.prepare(positions)
            self.txn.commit(positions, self.consumer.consumer_group_metadata())
        except TransactionAborted as aborted:
            self._after_abort(aborted.reason, rewind_on_abort)
            return
        except RecordRefused as refused:  # the replay sends that record to the policy
            self.poison.sink_refused(refused, self._sources_of(refused.record[0]))
            self._abort_and_rewind("poison-sink", str(refused), rewind_on_abort)
            return
        except KafkaException as exc:  # a changelog record refused: abortable or fatal
            try:
                self.txn.fail(exc.args[0], "changelog")
            except TransactionAborted as aborted:
                self._after_abort(aborted.reason, rewind_on_abort)
            return
        if self.state is not None:
            self.state.committed()  # the commit served the changelog delivery reports
        self.sinks.finish()
        self.tasks.note_committed(positions)
        self.poison.committed(self.tasks.committed(), self.records_in_txn > 0)
        self.purge.committed(positions)
        cause = self.txn.take_reset()
        if cause is not None:  # committed, then re-created against delayed requests
            self._start_resync(cause)
        if self.tally.dropped:
            log.warning(
                "dropped records in the committed transaction: %s",
                ", ".join(f"{n} {reason}" for reason, n in self.tally.dropped.items()),
            )
        self.metrics.publish(self.tally)
        self.tally.clear()
        self.records_in_txn = 0
        self._update_lag(positions)

    def _abort_and_rewind(self, reason: str, detail: str, rewind: bool = True) -> None:
        assert self.txn is not None
        log.warning("aborting transaction: %s", detail)
        try:
            self.txn.abort(reason)
        except TransactionAborted:
            pass
        self._after_abort(reason, rewind)

    def _after_abort(self, reason: str, rewind: bool = True) -> None:
        """Drop the transaction's work; rewind, or re-sync if the producer was re-created.

        Without ``rewind`` the partitions are leaving: a pending re-sync waits for the next
        commit or abort (the next assignment reads committed offsets anyway).
        """
        assert self.txn is not None
        self.poison.aborted(rewind, self.records_in_txn, self._positions, self._sources_of)
        self.sinks.abort()
        if self.state is not None:
            self.state.aborted()
        self.tally.clear()
        self.ctx.pending.clear()
        self.records_in_txn = 0
        if not rewind:
            return
        cause = self.txn.take_reset()
        if cause is not None:
            self._start_resync(cause)
        else:
            self._rewind()

    def _start_resync(self, cause: str) -> None:
        """After a producer re-creation, resume from what the broker committed, not memory.

        The old transaction may have committed or not; ``init_transactions`` of the new
        producer has settled it either way. Inputs are paused until every assigned partition
        is sought to the offset the group coordinator holds and every open store has dropped
        its overlay and caught up from its checkpoint to the changelog's committed end.
        """
        assert self.consumer is not None
        self.resync = PendingResync(cause, self.settings.application_id)
        if self.assignment:
            self.consumer.pause(self.assignment)
        if self.state is not None:
            self.state.aborted()
        self._try_resync()

    def _try_resync(self) -> bool:
        """One attempt at the pending re-sync; False while the broker can't answer yet."""
        assert self.consumer is not None and self.resync is not None
        found = self.resync.attempt(
            self.consumer, self.assignment, self.tasks.reset_positions(), self.tasks
        )
        if found is None:
            return False
        self.tasks.note_committed(found)
        self.resync = None
        self.sinks.recover(self.assignment)  # prepared sink writes: decided by the commit
        return True

    def _serve_group_while_resyncing(self) -> None:
        """Keep the consumer polled (rebalances, coordinator changes) while inputs are paused.

        Whatever it returns is dropped: the re-sync seeks every assigned partition anyway.
        """
        assert self.consumer is not None
        for msg in self.consumer.consume(self.settings.batch_size, _IDLE_POLL / 2):
            if msg.error() is not None:
                self._consumer_error(msg)

    def _rewind(self) -> None:
        """Seek every assigned partition back to its last committed offset."""
        assert self.consumer is not None
        committed = self.tasks.committed()
        for tp in self.assignment:
            offset = committed.get((tp.topic, tp.partition))
            if offset is not None:
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        self.sinks.recover(self.assignment)
        log.info("rewound %d partitions to their committed offsets", len(self.assignment))

    def _update_lag(self, positions: list[TopicPartition]) -> None:
        assert self.consumer is not None
        for tp in positions:
            _, high = self.consumer.get_watermark_offsets(tp, cached=True) or (None, None)
            if high is not None and high >= 0:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - tp.offset))
