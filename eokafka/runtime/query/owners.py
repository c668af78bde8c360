"""Which worker owns a key's partition, as Kafka says: the group's description.

Kafka is the coordinator: each member's assignment comes from the consumer group, and each
worker's query address rides in its consumer's client.id
(client_configs.consumer_client_id), which the group description carries. No registry of our
own. A description read while the group rebalances is not trusted for owners: the answer is
then "ask again". Where standby replicas live follows from the same description by the plan
every worker computes alike (runtime/group/placement.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from eokafka.client_configs import client_id_parts
from eokafka.runtime.group.placement import member_name, members_of, standby_plan
from eokafka.runtime.query.refusal import QueryError
from eokafka.testing.partitioners import murmur2

_OWNERS_TTL_S = 1.0
_TIMEOUT_S = 5.0
RETRY_AFTER_S = 1.0


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the Java client and eokafka's
    producers) gives a key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Member:
    instance: str
    url: str | None
    partitions: tuple[TopicPartition, ...]


@dataclass(frozen=True)
class GroupView:
    stable: bool
    members: tuple[Member, ...]
    standbys: dict[int, tuple[Member, ...]] = field(default_factory=dict)  # by partition

    def standby_holders(self, partition: int) -> tuple[Member, ...]:
        """The members the standby plan puts ``partition``'s standbys on (maybe not started
        yet: a holder answers only from a standby it really keeps)."""
        return self.standbys.get(partition, ())

    def owner(self, topic: str, partition: int) -> Member | None:
        for member in self.members:
            if any(tp.topic == topic and tp.partition == partition for tp in member.partitions):
                return member
        return None


class Owners:
    """The group's view, read at most once a second; partition counts, read once.

    ``inputs`` and ``replicas`` (the app's input topics and ``num_standby_replicas``) place
    the standbys as the workers do."""

    def __init__(
        self,
        admin: AdminClient,
        group: str,
        clock: Callable[[], float] = time.monotonic,
        inputs: tuple[str, ...] = (),
        replicas: int = 0,
    ) -> None:
        self._admin = admin
        self._group = group
        self._inputs = inputs
        self._replicas = replicas
        self._clock = clock
        self._lock = threading.Lock()
        self._view: tuple[float, GroupView] | None = None
        self._partitions: dict[str, int] = {}

    def partitions(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            try:
                meta = self._admin.list_topics(topic, timeout=_TIMEOUT_S).topics[topic]
            except KafkaException as exc:
                raise QueryError(503, f"topic {topic!r}: {exc}", RETRY_AFTER_S) from None
            if meta.error is not None or not meta.partitions:
                raise QueryError(503, f"topic {topic!r}: no partitions known", RETRY_AFTER_S)
            count = self._partitions[topic] = len(meta.partitions)
        return count

    def view(self) -> GroupView:
        with self._lock:
            now = self._clock()
            if self._view is not None and now - self._view[0] < _OWNERS_TTL_S:
                return self._view[1]
            view = self._read()
            self._view = (now, view)
            return view

    def forget(self) -> None:
        """A forward failed: read the group again next time."""
        with self._lock:
            self._view = None

    def _read(self) -> GroupView:
        group = self._group
        try:
            futures = self._admin.describe_consumer_groups([group], request_timeout=_TIMEOUT_S)
            described = futures[group].result(timeout=_TIMEOUT_S * 2)
        except (KafkaException, TimeoutError) as exc:
            raise QueryError(
                503, f"group {group!r} could not be described: {exc}", RETRY_AFTER_S
            ) from None
        members = []
        by_name: dict[str, Member] = {}
        for m in described.members:
            named, url = client_id_parts(m.client_id)
            assigned = m.assignment.topic_partitions if m.assignment is not None else ()
            member = Member(m.group_instance_id or named, url, tuple(assigned))
            members.append(member)
            by_name[member_name(m.group_instance_id, m.client_id, m.member_id)] = member
        standbys: dict[int, tuple[Member, ...]] = {}
        if self._replicas > 0:
            plan = standby_plan(members_of(described, self._inputs), self._replicas)
            standbys = {p: tuple(by_name[n] for n in names) for p, names in plan.items()}
        return GroupView(described.state.name == "STABLE", tuple(members), standbys)
