"""Topics through the admin client: list, describe, create, delete (``eokafka topics``).

Every call is bounded in time and every refusal the broker gives becomes a TopicError naming
the topic and what the broker said (``TOPIC_ALREADY_EXISTS``, ``INVALID_REPLICATION_FACTOR``,
``POLICY_VIOLATION``, an unknown config key, ...). Creation and deletion return once the
cluster's metadata shows the change, so the next command finds the topic (or not).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import (
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    ConfigSource,
    NewTopic,
    OffsetSpec,
)

from eokafka.errors import EokafkaError

TIMEOUT = 30.0  # seconds any one admin call may take once the cluster has answered
_NO_TOPIC = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)


class TopicError(EokafkaError):
    """The broker refused a topic operation, or the topic is not there."""


@dataclass(frozen=True)
class TopicSummary:
    name: str
    partitions: int
    replication: int


def _refusal(topic: str, what: str, exc: KafkaException) -> TopicError:
    err = exc.args[0]
    if isinstance(err, KafkaError):
        return TopicError(f"could not {what} topic {topic!r}: {err.str()} ({err.name()})")
    return TopicError(f"could not {what} topic {topic!r}: {exc}")


def topics(admin: AdminClient, internal: bool = False) -> list[TopicSummary]:
    """Every topic (the broker's own ``__``-topics only if ``internal``), by name."""
    found = admin.list_topics(timeout=TIMEOUT).topics
    out = []
    for name, meta in sorted(found.items()):
        if name.startswith("__") and not internal:
            continue
        replicas = {len(p.replicas) for p in meta.partitions.values()}
        out.append(TopicSummary(name, len(meta.partitions), max(replicas, default=0)))
    return out


def partition_count(admin: AdminClient, topic: str) -> int | None:
    """The topic's partition count, or None when it does not exist."""
    meta = admin.list_topics(topic=topic, timeout=TIMEOUT).topics.get(topic)
    if meta is None or meta.error is not None and meta.error.code() in _NO_TOPIC:
        return None
    if meta.error is not None:
        raise TopicError(f"topic {topic!r}: {meta.error.str()} ({meta.error.name()})")
    return len(meta.partitions)


def require(admin: AdminClient, topic: str) -> int:
    """The partition count of a topic that must exist; a TopicError that says how to make it."""
    count = partition_count(admin, topic)
    if count is None:
        raise TopicError(
            f"topic {topic!r} does not exist: create it with `eokafka topics create {topic} "
            "--partitions N` (or all of an app's topics: `eokafka topics create --for module:app`)"
        )
    return count


def create(
    admin: AdminClient,
    counts: Mapping[str, int],
    replication: int = -1,
    config: Mapping[str, str] | None = None,
    exist_ok: bool = False,
) -> dict[str, int]:
    """Create each topic with its partition count (-1: the broker's default); return the
    counts the cluster reports. A topic that exists is an error unless ``exist_ok``."""
    if not counts:
        return {}
    new = [
        NewTopic(t, num_partitions=n, replication_factor=replication, config=dict(config or {}))
        for t, n in counts.items()
    ]
    futures = admin.create_topics(new, request_timeout=TIMEOUT, operation_timeout=TIMEOUT)
    created: list[str] = []
    for topic, future in futures.items():
        try:
            future.result(timeout=TIMEOUT)
            created.append(topic)
        except KafkaException as exc:
            err = exc.args[0]
            exists = isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS
            if not (exists and exist_ok):
                raise _refusal(topic, "create", exc) from None
    return {topic: _await(admin, topic, present=True) for topic in counts}


def delete(admin: AdminClient, names: list[str]) -> None:
    """Delete the topics; return once metadata no longer shows them."""
    for topic in names:
        if partition_count(admin, topic) is None:
            raise TopicError(f"topic {topic!r} does not exist")
    futures = admin.delete_topics(names, request_timeout=TIMEOUT, operation_timeout=TIMEOUT)
    for topic, future in futures.items():
        try:
            future.result(timeout=TIMEOUT)
        except KafkaException as exc:
            raise _refusal(topic, "delete", exc) from None
    for topic in names:
        _await(admin, topic, present=False)


def _await(admin: AdminClient, topic: str, present: bool) -> int:
    """Poll metadata until the topic is there with a leader for every partition, or gone."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        meta = admin.list_topics(topic=topic, timeout=TIMEOUT).topics.get(topic)
        there = meta is not None and meta.error is None and len(meta.partitions) > 0
        if present and there and all(p.leader >= 0 for p in meta.partitions.values()):
            return len(meta.partitions)
        if not present and not there:
            return 0
        if time.monotonic() >= deadline:
            state = "to show with a leader for every partition" if present else "to go"
            raise TopicError(f"topic {topic!r}: waited {TIMEOUT:.0f}s for it {state}")
        time.sleep(0.05)  # metadata propagates from the controller within milliseconds


def describe(admin: AdminClient, topic: str) -> list[str]:
    """A topic's partitions (leader, replicas, in-sync replicas, offsets) and the configs
    that differ from the broker's defaults, as lines of text."""
    require(admin, topic)
    described = admin.describe_topics(TopicCollection([topic]), request_timeout=TIMEOUT)
    info = described[topic].result(timeout=TIMEOUT)
    parts = sorted(info.partitions, key=lambda p: p.id)
    tps = [TopicPartition(topic, p.id) for p in parts]
    offsets = {
        name: _offsets(admin, tps, spec, level)
        for name, spec, level in (
            ("low", OffsetSpec.earliest(), IsolationLevel.READ_UNCOMMITTED),
            ("stable", OffsetSpec.latest(), IsolationLevel.READ_COMMITTED),
            ("high", OffsetSpec.latest(), IsolationLevel.READ_UNCOMMITTED),
        )
    }
    replication = max((len(p.replicas) for p in parts), default=0)
    lines = [
        f"topic {topic}: {len(parts)} partitions, replication factor {replication}, "
        f"id {info.topic_id}"
    ]
    for p in parts:
        low, stable, high = (offsets[k][p.id] for k in ("low", "stable", "high"))
        held = f", a transaction open from {stable}" if stable < high else ""
        lines.append(
            f"  partition {p.id}: leader {_node(p.leader)}, replicas "
            f"{[n.id for n in p.replicas]}, in sync {[n.id for n in p.isr]}, offsets "
            f"{low}..{high} ({high - low} kept{held})"
        )
    configs = _configs(admin, topic)
    lines.append("configs set on the topic: " + (", ".join(configs) if configs else "none"))
    return lines


def _node(node: object) -> str:
    return "none" if node is None else str(getattr(node, "id", node))


def _offsets(
    admin: AdminClient, tps: list[TopicPartition], spec: OffsetSpec, level: IsolationLevel
) -> dict[int, int]:
    futures = admin.list_offsets(
        {tp: spec for tp in tps}, isolation_level=level, request_timeout=TIMEOUT
    )
    return {tp.partition: f.result(timeout=TIMEOUT).offset for tp, f in futures.items()}


def _configs(admin: AdminClient, topic: str) -> list[str]:
    """``key=value`` of the configs set on the topic itself (not broker defaults)."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource], request_timeout=TIMEOUT)[resource].result(
        timeout=TIMEOUT
    )
    return sorted(
        f"{name}={entry.value}"
        for name, entry in entries.items()
        if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    )
