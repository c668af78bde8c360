"""The worker loop: poll a batch, hand each task its records, commit when due.

One consumer and one transactional producer per worker process (KIP-447). Everything else
is a part built in wiring.py: the tasks process the records (tasks/process.py), the wall
clock fires wall-clock timers and closes idle windows (tasks/wall_clock.py), the record
collector produces their outputs (commit/collector.py), and the transaction owner commits,
aborts and re-syncs with its participants (commit/owner.py). The loop only drives them:
``start`` joins the group, ``step`` is one pass, ``loop`` steps until asked to stop, then
commits and leaves; ``run`` is both. The CLI and the test driver use these same methods.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaException

from eokafka.config import Settings
from eokafka.errors import EokafkaError, MissingTopicError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.clients import KAFKA, Clients, config_errors
from eokafka.runtime.commit.errors import RecordFailed, TransactionAborted
from eokafka.runtime.group.members import consumer_error, successor_exists
from eokafka.runtime.process.wiring import build
from eokafka.runtime.tasks.changelog_topics import ensure_changelogs
from eokafka.topology import Topology

if TYPE_CHECKING:
    from eokafka.runtime.process.bounded import Bounds
    from eokafka.runtime.query.desk import QueryDesk

log = logging.getLogger("eokafka.worker")
# A rebalance callback runs inside consume(), which then waits out its whole timeout before
# the loop steps a restore: short, so a small store restores in tens of ms.
_IDLE_POLL = 0.1
# With a query server, a query waits for the loop's next step, and librdkafka's consume has
# no wake-up: the loop waits for records at most this long (benchmarks/queries.py).
_QUERY_WAIT_S = 0.01
_OFFSETS_READ_S = 0.5  # a try at assigned inputs' committed offsets, once per step


class Worker:
    def __init__(
        self,
        topology: Topology,
        settings: Settings,
        instance_id: str,
        metrics: WorkerMetrics,
        bounds: Bounds | None = None,
        clients: Clients = KAFKA,
        query_url: str | None = None,
    ) -> None:
        """``query_url``: where this worker's query server is reached (given with one)."""
        topology.validate()
        self.topology = topology
        self.settings = settings
        self.instance_id = instance_id
        self.clients = clients
        parts = build(topology, settings, instance_id, metrics, bounds, clients, query_url)
        self.parts = parts
        self.owner = parts.owner
        self.consumer = parts.consumer
        self.tasks = parts.tasks
        self.bound = parts.bound
        self.eager = parts.rebalance.protocol == "eager"
        self.stopping = False
        owner = self.owner
        # Queries are answered by this loop between batches (runtime/query/desk.py).
        self.desk: QueryDesk | None = None
        if query_url is not None:
            from eokafka.runtime.query.desk import QueryDesk  # a worker without one skips it

            self.desk = QueryDesk(
                self.tasks, lambda: owner.resyncing, lambda: owner.started,
                standby=parts.standby,
            )  # fmt: skip
        self._max_wait = None if query_url is None else _QUERY_WAIT_S

    # -- lifecycle -----------------------------------------------------------------------

    def stop(self, *_: Any) -> None:
        """Ask the loop to commit and leave; safe to call from a signal handler."""
        self.stopping = True

    def run(self) -> None:
        self.start()
        self.loop()

    def start(self) -> None:
        """Check or create the topics, make the producer and join the group."""
        parts, topology, settings = self.parts, self.topology, self.settings
        topics = parts.topics
        if settings.create_topics:
            from eokafka.app_topics import create_missing  # only when told to create

            create_missing(topics, topology, settings.partitions)
        for topic, like in topology.internal_topics.items():
            partitions = topics.partitions(like)
            if partitions is None:
                raise MissingTopicError(f"topic {like!r} (which {topic!r} follows) does not exist")
            topics.ensure_repartition(topic, partitions)
        for topic in topology.topics:
            topics.ensure(topic, "input")
        if parts.loader is not None:
            ensure_changelogs(topics, topology, parts.loader.changelogs)
        if topology.may_dead_letter(settings.on_error):
            topics.ensure(settings.dlq_topic, "dead-letter", internal=True)
            parts.ctx.known(settings.dlq_topic)
        consumer = self.consumer
        with config_errors():
            self.owner.start(
                self.tasks.positions,
                consumer.consumer_group_metadata,
                lambda: successor_exists(consumer, topics.admin, settings, self.instance_id),
            )
        self.clients.release_predecessor(settings, self.instance_id, topics.admin)
        if parts.global_tables is not None:  # read in full before any task may run
            parts.global_tables.restore(topics, lambda: self.stopping)
        rebalance = parts.rebalance
        consumer.subscribe(
            topology.topics,
            on_assign=rebalance.on_assign,
            on_revoke=rebalance.on_revoke,
            on_lost=rebalance.on_lost,
        )
        log.info(
            "worker running: group.id=%s transactional.id=%s topics=%s rebalancing=%s",
            settings.application_id,
            self.owner.transactional_id,
            ",".join(topology.topics),
            rebalance.protocol,
        )

    def loop(self) -> None:
        """Step until asked to stop (or a bounded run is done), then commit and leave."""
        clean = False
        try:
            while not self.stopping:
                self.step()
                if self.bound is not None and self.bound.finished():
                    self.stopping = True
            if self.owner.open:
                self.owner.commit()
            clean = True
        finally:
            self.close(clean)

    def close(self, clean: bool) -> None:
        """Leave without an open transaction; after an error, never mask it with another."""
        parts = self.parts
        if not clean:
            self.owner.close(clean=False)
        if parts.standby is not None:
            parts.standby.close()  # first: stores leaving in the revoke below are not kept
        member_id = self.consumer.memberid() if clean else None
        try:
            self.consumer.close()  # a revoke in here commits an open transaction
        except (EokafkaError, KafkaException) as exc:
            if clean:
                raise
            log.warning("consumer close after an error: %s", exc)
        if clean:
            self.clients.leave(self.settings, self.instance_id, member_id)  # stopped on purpose
            self.owner.close(clean=True)
            parts.sinks.close()
        self.tasks.close()
        if parts.global_tables is not None:
            parts.global_tables.close()
        log.info("worker stopped (%s)", "clean" if clean else "after an error")

    # -- the loop ------------------------------------------------------------------------

    def step(self) -> None:
        """One pass: restores and standbys, one batch through the tasks, the wall clock's
        work, commit when due."""
        owner, tasks, consumer = self.owner, self.tasks, self.consumer
        clock = self.clients.clock
        if self.desk is not None:
            self.desk.serve()
        if tasks.awaiting:  # assigned inputs whose committed offsets are not known yet
            self.parts.rebalance.read_offsets(_OFFSETS_READ_S)
        if owner.resyncing and not owner.try_resync():
            self._serve_group()
            return
        standby = self.parts.standby
        if standby is not None:
            standby.step()
        if tasks.restoring:
            ready = tasks.restore_step()
            if ready:
                consumer.resume(ready)
        if tasks.unsettled and not self.eager and tasks.settle(clock()):  # eager: at assign
            self.parts.rebalance.replan()
        timeout = max(0.0, owner.deadline - clock()) if owner.open else _IDLE_POLL
        if self._max_wait is not None:
            timeout = min(timeout, self._max_wait)
        if tasks.restoring or (standby is not None and standby.catching_up):
            timeout = 0.0
        ordering = tasks.ordering
        queued = ordering is not None and bool(ordering.queued)
        if queued:  # records wait in a task's queue: poll no longer than its idle wait
            assert ordering is not None
            wait = ordering.wait_s()
            if wait is not None:
                timeout = min(timeout, wait)
        if self.parts.global_tables is not None:  # updates before the batch that may need them
            self.parts.global_tables.poll()
        cap = self.parts.abort_loop.cap
        size = self.settings.batch_size
        if cap is not None:  # narrowing an abort loop down: fewer records per transaction
            size = max(1, min(size, cap - owner.records))
        msgs = consumer.consume(size, timeout)
        if self.bound is not None:
            msgs = self.bound.admit(msgs)
        wall_clock = self.parts.wall_clock
        limit = None if cap is None else size  # narrowing: the queues release no more
        runs = list(tasks.runs(msgs, limit)) if msgs or queued else []
        if runs:
            owner.begin()
            try:
                self.parts.processing.batch(runs)
            except (RecordFailed, TransactionAborted) as failed:
                owner.abandon(failed)
                return
            if wall_clock is not None:
                wall_clock.active(runs)
        if wall_clock is not None:
            try:
                wall_clock.step()
            except (RecordFailed, TransactionAborted) as failed:
                owner.abandon(failed)
                return
        every = self.settings.commit_every if cap is None else min(cap, self.settings.commit_every)
        if owner.open and (owner.records >= every or clock() >= owner.deadline):
            owner.commit()

    def commit(self) -> bool:
        """Commit the open transaction now, as the loop does when it is due."""
        return self.owner.commit()

    def _serve_group(self) -> None:
        """Keep the consumer polled (rebalances, coordinator changes) while inputs are paused
        for a re-sync. Whatever it returns is dropped: the re-sync seeks every input anyway."""
        for msg in self.consumer.consume(self.settings.batch_size, _IDLE_POLL / 2):
            if msg.error() is not None:
                consumer_error(msg, self.settings.application_id, self.instance_id)
