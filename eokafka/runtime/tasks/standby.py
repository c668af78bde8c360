"""Standby replicas: warm copies of stores of partitions this worker does not own.

With ``num_standby_replicas = k`` each partition's in-memory stores are kept on up to ``k``
other workers, chosen from the group membership by :mod:`eokafka.runtime.group.placement`
(every worker computes the same plan and keeps what falls on itself). A standby tails its
changelog read_committed through a changelog reader of its own (changelog_reader.py, the one
restores use: assign, not subscribe, strict offsets), in bounded batches from the worker
loop, and checkpoints the offset it read up to, exactly as a restore does. When its
partition is assigned here, :meth:`StandbyReplicas.take` hands the store to the active side,
which then restores only the tail from that checkpoint.

Only in-memory stores get standbys. A persistent store's files are its warm copy: a worker
sharing that state dir that takes the partition over restores only the tail from them, and a
standby holding the files open would lock out such a worker when it becomes the owner.

Standby tailing never counts in ``eokafka_records_restored_total``; its progress shows in
``eokafka_standby_lag{store,partition}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from confluent_kafka import ConsumerGroupState, KafkaException, TopicPartition

from eokafka.client_configs import standby_consumer_config
from eokafka.config import Settings
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.clients import KAFKA, Clients
from eokafka.runtime.group.placement import members_of, standbys_of
from eokafka.runtime.tasks.changelog_reader import ChangelogReader, Restore
from eokafka.state import Store, changelog_topic, open_store
from eokafka.topology import Topology

log = logging.getLogger("eokafka.standby")
StoreKey = tuple[str, int]  # (store name, partition)
STANDBY_BACKENDS = frozenset({"memory"})  # the stores that get standbys (see above)
_BATCH = 10_000
_REFRESH_EVERY = 5.0  # seconds between membership reads while nothing changes
_RETRY_AFTER = 0.5  # seconds before reading the membership again while the group settles
_LAG_EVERY = 1.0  # seconds between standby lag gauge refreshes


class StandbyReplicas:
    """The standby stores of one worker, their changelog consumer and their placement."""

    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        metrics: WorkerMetrics,
        admin: Any,
        instance_id: str,
        member_id: Callable[[], str | None],
        clients: Clients = KAFKA,
    ) -> None:
        self.settings = settings
        self.replicas = settings.num_standby_replicas
        self.metrics = metrics
        self.admin = admin
        self.instance_id = instance_id
        self.member_id = member_id
        self.clients = clients
        self.inputs = tuple(topology.topics)
        self.specs = {n: s for n, s in topology.stores.items() if s.backend in STANDBY_BACKENDS}
        self.changelogs = {n: changelog_topic(settings.application_id, n) for n in self.specs}
        self.reader = ChangelogReader(
            lambda: clients.restore_consumer(standby_consumer_config(settings, instance_id)),
            self.changelogs,
            metrics,
            restoring=False,
        )
        self.standbys: dict[StoreKey, Restore] = {}  # each standby store and its tail
        self.owned: set[int] = set()
        self.catching_up = False  # the last batch was large: the loop should not idle
        self._epoch = 0  # bumped by every assignment change; older membership reads are stale
        self._pending: tuple[Future[Any], int] | None = None
        self._refresh_due = 0.0
        self._lag_due = 0.0
        self._failed_reads = 0
        self._closed = False
        persistent = sorted(set(topology.stores) - set(self.specs))
        if persistent:
            log.info(
                "num_standby_replicas=%d: no standby for the persistent stores %s (their files "
                "are the warm copy on their disk); in-memory stores: %s",
                self.replicas, ", ".join(persistent), ", ".join(sorted(self.specs)) or "none",
            )  # fmt: skip

    # -- the seam with the active side ---------------------------------------------------

    def step(self) -> None:
        """Once per worker loop step: never blocks (membership futures polled, consume 0)."""
        if self._closed:
            return
        now = self.clients.clock()
        self._poll_membership(now)
        if not self.standbys:
            self.catching_up = False
            return
        before = sum(tail.position for tail in self.standbys.values())
        _, lost = self.reader.step(0)
        for tail, why in lost:
            self._from_scratch((tail.name, tail.partition), why)
        read = sum(tail.position for tail in self.standbys.values()) - before
        self.catching_up = read >= _BATCH // 2
        if now >= self._lag_due:
            self._lag_due = now + _LAG_EVERY
            self._update_lag()

    def replan(self, owned: set[int]) -> None:
        """After an assignment change: ``owned`` partition indexes are active here now.

        A standby of a partition now owned keeps tailing until its task opens its stores
        (once the committed offsets are known) and ``take`` hands it over."""
        self.owned = set(owned)
        self._changed()

    def take(self, store_name: str, partition: int) -> Store | None:
        """The warm store of a partition that becomes active here, or None; stops tailing it."""
        key = (store_name, partition)
        tail = self.standbys.get(key)
        if tail is None:
            return None
        store = tail.store
        self._forget(key)
        log.info(
            "standby store %s[%d] promoted to active at changelog checkpoint %s",
            store_name, partition, store.checkpoint,
        )  # fmt: skip
        return store

    def release(self, store_name: str, partition: int, store: Store) -> bool:
        """Keep a store that leaves the active side as a standby; False: the caller closes it.

        The plan in force was made before this assignment change, so the store is kept
        until a plan made after it decides."""
        self._changed()
        if self._closed or store_name not in self.specs or store.restoring:
            return False
        store.abort()
        self._start((store_name, partition), store)
        return True

    def close(self) -> None:
        """Close every standby; stores released after this are not kept (a stop)."""
        self._closed = True
        for key in list(self.standbys):
            self._forget(key)
        self.reader.close()

    # -- placement -----------------------------------------------------------------------

    def _changed(self) -> None:
        self._epoch += 1
        self._refresh_due = 0.0

    def _poll_membership(self, now: float) -> None:
        if self._pending is not None:
            future, epoch = self._pending
            if not future.done():
                return
            self._pending = None
            self._refresh_due = now + _RETRY_AFTER
            try:
                described = future.result()
            except KafkaException as exc:
                self._refresh_due = now + _REFRESH_EVERY
                self._failed_reads += 1
                level = logging.WARNING if self._failed_reads == 1 else logging.DEBUG
                log.log(level, "standby placement: could not read group %r: %s",
                        self.settings.application_id, exc)  # fmt: skip
                return
            self._failed_reads = 0
            if epoch != self._epoch:  # read before the last assignment change: again
                self._refresh_due = now
            elif described.state == ConsumerGroupState.STABLE and self._adopt(described):
                self._refresh_due = now + _REFRESH_EVERY
        if now >= self._refresh_due:
            group = self.settings.application_id
            futures = self.admin.describe_consumer_groups([group], request_timeout=10)
            self._pending = (futures[group], self._epoch)

    def _adopt(self, described: Any) -> bool:
        """Start and stop standbys to match the plan; False if this worker is not in it."""
        me = self.member_id()
        here = standbys_of(members_of(described, self.inputs), me, self.replicas) if me else None
        if here is None:
            return False
        wanted = {(n, p) for n in self.specs for p in here - self.owned}
        for key in set(self.standbys) - wanted:
            if key[1] not in self.owned:  # an owned one waits for ``take``
                self._stop(key, "the placement puts it elsewhere")
        for key in sorted(wanted - set(self.standbys)):
            self._start(key, None)
        return True

    # -- tailing -------------------------------------------------------------------------

    def _start(self, key: StoreKey, store: Store | None) -> None:
        """Tail ``key``'s changelog from the store's checkpoint (a new store: from the start)."""
        name, partition = key
        if key in self.standbys:
            self._forget(key)
        if store is None:
            s = self.settings
            store = open_store(self.specs[name], s.state_dir, s.application_id, partition)
        c = store.checkpoint
        offset = 0 if c is None else max(c - 1, 0)
        tail = Restore(name, partition, store, offset, None, floor=c or 0, full=c is None)
        self.standbys[key] = tail
        self.reader.start(tail)
        self.reader.assign()
        log.info("standby store %s[%d] started at changelog offset %d", name, partition, offset)

    def _stop(self, key: StoreKey, why: str) -> None:
        """Stop tailing ``key`` and close its store: it lives elsewhere or is active here."""
        tail = self.standbys.get(key)
        if tail is None:
            return
        self._forget(key)
        tail.store.close()
        log.info("standby store %s[%d] stopped at changelog checkpoint %s: %s",
                 *key, tail.store.checkpoint, why)  # fmt: skip

    def _forget(self, key: StoreKey) -> None:
        """Stop tailing ``key`` (the store itself is left to the caller)."""
        tail = self.standbys.pop(key, None)
        if tail is not None:
            self.reader.cancel(tail)
            self.reader.assign()
        try:
            self.metrics.standby_lag.remove(key[0], str(key[1]))
        except KeyError:
            pass

    def _from_scratch(self, key: StoreKey, why: str) -> None:
        """The position left the changelog (records deleted under it): tail it anew."""
        log.warning("standby store %s[%d]: %s; starting it over from the changelog's start",
                    *key, why)  # fmt: skip
        tail = self.standbys.get(key)
        if tail is None:
            return
        self._forget(key)
        tail.store.close()
        self._start(key, None)

    def lag(self, key: StoreKey) -> int | None:
        """Changelog records a standby is behind (its client's cached high watermark minus
        its position); None when there is no such standby or the watermark is not known."""
        tail = self.standbys.get(key)
        if tail is None:
            return None
        tp = TopicPartition(self.changelogs[key[0]], key[1])
        _, high = self.reader.consumer().get_watermark_offsets(tp, cached=True) or (None, None)
        return None if high is None or high < 0 else max(0, high - tail.position)

    def _update_lag(self) -> None:
        for key in self.standbys:
            lag = self.lag(key)
            if lag is not None:
                self.metrics.standby_lag.labels(key[0], str(key[1])).set(lag)
