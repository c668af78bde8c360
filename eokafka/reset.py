"""Reprocess from scratch: the application reset, as Kafka Streams' StreamsResetter does it.

A reset moves the group's committed offsets on the app's input topics, deletes the topics
the app made for itself (changelogs, repartition topics, source offsets; the dead-letter
topic only when asked) and wipes this machine's local state. It refuses while the group has
members: a live worker would commit over the new offsets and keep its stores. Planning reads
the cluster and changes nothing; ``execute`` carries a plan out.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, KafkaException
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient, OffsetSpec

from eokafka.client_configs import admin_config
from eokafka.config import Settings
from eokafka.errors import EokafkaError
from eokafka.runtime.clients import kafka_admin
from eokafka.state import changelog_topic
from eokafka.topology import Topology

_TIMEOUT = 30.0
_ISO_DURATION = re.compile(
    r"P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
TopicRole = Literal["changelog", "repartition", "source offsets", "dead-letter"]


class ResetError(EokafkaError):
    """The reset can't go ahead (active members, bad option, a topic that won't go)."""


@dataclass(frozen=True)
class Target:
    """Where offsets go: ``earliest``, ``latest``, or the first offset at ``timestamp_ms``."""

    kind: Literal["earliest", "latest", "timestamp"]
    timestamp_ms: int | None = None

    def describe(self) -> str:
        if self.timestamp_ms is None:
            return f"to {self.kind}"
        when = datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).isoformat()
        return f"to the first record at or after {when}"


def parse_duration(text: str) -> float:
    """Seconds from ``PT1H30M``/``P1DT2H`` (ISO 8601) or a plain number of seconds."""
    try:
        seconds = float(text)
    except ValueError:
        match = _ISO_DURATION.fullmatch(text.strip())
        if match is None or not any(match.groupdict().values()) or text.upper().endswith("T"):
            raise ResetError(
                f"--by-duration {text!r}: give seconds or an ISO 8601 duration such as PT1H, "
                "PT15M or P1DT12H"
            ) from None
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
        seconds = (
            parts.get("days", 0) * 86_400
            + parts.get("hours", 0) * 3_600
            + parts.get("minutes", 0) * 60
            + parts.get("seconds", 0)
        )
    if seconds < 0:
        raise ResetError(f"--by-duration {text!r} is negative")
    return seconds


def parse_datetime(text: str, option: str = "--to-datetime") -> int:
    """Epoch ms of an ISO 8601 date-time; one without a zone is taken as UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ResetError(
            f"{option} {text!r}: give an ISO 8601 date-time such as 2026-05-01T12:00:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def choose_target(
    to_latest: bool, to_datetime: str | None, by_duration: str | None, now_ms: int | None = None
) -> Target:
    """The one target the options ask for (earliest when none does)."""
    given = [name for name, on in (
        ("--to-latest", to_latest), ("--to-datetime", to_datetime), ("--by-duration", by_duration)
    ) if on]  # fmt: skip
    if len(given) > 1:
        raise ResetError(f"choose one of {', '.join(given)}")
    if to_latest:
        return Target("latest")
    if to_datetime is not None:
        return Target("timestamp", parse_datetime(to_datetime))
    if by_duration is not None:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return Target("timestamp", now - int(parse_duration(by_duration) * 1000))
    return Target("earliest")


@dataclass(frozen=True)
class OffsetMove:
    topic: str
    partition: int
    committed: int | None  # None: the group has no offset there
    target: int


@dataclass
class ResetPlan:
    application_id: str
    bootstrap: str
    target: Target
    moves: list[OffsetMove] = field(default_factory=list)
    deletions: list[tuple[str, TopicRole]] = field(default_factory=list)
    kept: list[tuple[str, TopicRole]] = field(default_factory=list)
    state_dir: Path | None = None  # this app's local stores, when there are any

    def describe(self) -> str:
        lines = [
            f"reset of application {self.application_id!r} (consumer group "
            f"{self.application_id!r}) on {self.bootstrap}:",
            f"  move committed offsets {self.target.describe()}:",
        ]
        for m in self.moves:
            was = "none" if m.committed is None else str(m.committed)
            lines.append(f"    {m.topic}[{m.partition}]: {was} -> {m.target}")
        if not self.moves:
            lines.append("    (no input partitions)")
        lines.append("  delete topics:" if self.deletions else "  delete topics: none")
        lines.extend(f"    {topic} ({role})" for topic, role in self.deletions)
        for topic, role in self.kept:
            lines.append(f"  keep {topic} ({role}; --delete-dead-letters deletes it)")
        lines.append(
            f"  wipe local state: {self.state_dir}" if self.state_dir else "  local state: none"
        )
        return "\n".join(lines)


def admin_client(settings: Settings) -> AdminClient:
    return kafka_admin(admin_config(settings))


def _result(future: object, what: str) -> object:
    try:
        return future.result(timeout=_TIMEOUT)  # type: ignore[attr-defined]
    except KafkaException as exc:
        raise ResetError(f"{what}: {exc.args[0].str()}") from None


def active_members(admin: AdminClient, group: str) -> list[str]:
    """Client ids (with instance ids) of the group's members; empty when none is active."""
    futures = admin.describe_consumer_groups([group], request_timeout=_TIMEOUT)
    description = _result(futures[group], f"describe consumer group {group!r}")
    members = getattr(description, "members", None) or []
    return [
        f"{m.client_id}" + (f" (group.instance.id {m.group_instance_id})"
                            if m.group_instance_id else "")
        for m in members
    ]  # fmt: skip


def wait_until_inactive(admin: AdminClient, group: str, wait_s: float) -> None:
    """Return once the group has no members; raise ResetError naming them after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        members = active_members(admin, group)
        if not members:
            return
        if time.monotonic() >= deadline:
            raise ResetError(
                f"consumer group {group!r} has {len(members)} active member(s): "
                f"{', '.join(members)}. Stop every worker of the app first (SIGTERM: a "
                "worker stopped on purpose leaves the group as it exits). A static member "
                "that crashed or ran with leave_group_on_stop=False stays a member for "
                "session.timeout.ms (45 s) after it stopped: wait that long, or give --wait 60"
            )
        time.sleep(1.0)


def _existing_topics(admin: AdminClient) -> dict[str, int]:
    metadata = admin.list_topics(timeout=_TIMEOUT)
    return {
        name: len(md.partitions) for name, md in metadata.topics.items() if md.error is None
    }


def _committed(admin: AdminClient, group: str) -> dict[tuple[str, int], int]:
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    result = _result(futures[group], f"list offsets of group {group!r}")
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in getattr(result, "topic_partitions", None) or []
        if tp.offset >= 0
    }


def _targets(
    admin: AdminClient, partitions: list[tuple[str, int]], target: Target
) -> dict[tuple[str, int], int]:
    def offsets(spec: OffsetSpec) -> dict[tuple[str, int], int]:
        requests = {TP(t, p): spec for t, p in partitions}
        futures = admin.list_offsets(
            requests, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=_TIMEOUT
        )
        return {
            (tp.topic, tp.partition): _result(f, f"list offsets of {tp.topic}[{tp.partition}]")
            .offset  # type: ignore[attr-defined]
            for tp, f in futures.items()
        }

    if not partitions:
        return {}
    if target.kind == "earliest":
        return offsets(OffsetSpec.earliest())
    ends = offsets(OffsetSpec.latest())
    if target.kind == "latest":
        return ends
    assert target.timestamp_ms is not None
    found = offsets(OffsetSpec.for_timestamp(target.timestamp_ms))
    # No record at or after the time: the partition's end.
    return {tp: off if off >= 0 else ends[tp] for tp, off in found.items()}


def internal_topics(topology: Topology, settings: Settings) -> list[tuple[str, TopicRole]]:
    """Every topic the app makes for itself, in the order a reset deletes them."""
    topology.validate()
    app_id = settings.application_id
    topics: list[tuple[str, TopicRole]] = [
        (changelog_topic(app_id, name), "changelog") for name in sorted(topology.stores)
    ]
    topics += [(topic, "repartition") for topic in sorted(topology.internal_topics)]
    topics.append((f"{app_id}-source-offsets", "source offsets"))
    topics.append((settings.dlq_topic, "dead-letter"))
    return topics


def plan_reset(
    topology: Topology,
    settings: Settings,
    target: Target,
    delete_dead_letters: bool = False,
    admin: AdminClient | None = None,
) -> ResetPlan:
    """What a reset would do, read from the cluster and the state dir; changes nothing."""
    admin = admin or admin_client(settings)
    group = settings.application_id
    existing = _existing_topics(admin)
    internal = internal_topics(topology, settings)
    internal_names = {topic for topic, _ in internal}
    inputs = [t for t in topology.topics if t not in internal_names]
    missing = [t for t in inputs if t not in existing]
    if missing:
        raise ResetError(f"input topic(s) {', '.join(missing)} do not exist on the cluster")
    partitions = [(t, p) for t in inputs for p in range(existing[t])]
    committed = _committed(admin, group)
    targets = _targets(admin, partitions, target)
    plan = ResetPlan(group, settings.bootstrap_servers, target)
    plan.moves = [OffsetMove(t, p, committed.get((t, p)), targets[(t, p)]) for t, p in partitions]
    for topic, role in internal:
        if topic not in existing:
            continue
        if role == "dead-letter" and not delete_dead_letters:
            plan.kept.append((topic, role))
        else:
            plan.deletions.append((topic, role))
    stores = Path(settings.state_dir) / group / "stores"
    plan.state_dir = stores if stores.exists() else None
    return plan


def execute(plan: ResetPlan, settings: Settings, admin: AdminClient | None = None) -> None:
    """Carry the plan out: offsets, then topics (waiting until they are gone), then state."""
    admin = admin or admin_client(settings)
    group = plan.application_id
    wait_until_inactive(admin, group, 0.0)  # members may have joined since the plan
    if plan.moves:
        tps = [TP(m.topic, m.partition, m.target) for m in plan.moves]
        futures = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)])
        _result(futures[group], f"commit the new offsets of group {group!r}")
    if plan.deletions:
        names = [topic for topic, _ in plan.deletions]
        futures = admin.delete_topics(names, operation_timeout=_TIMEOUT)
        for topic, future in futures.items():
            _result(future, f"delete topic {topic!r}")
        _await_deleted(admin, names, group)
    if plan.state_dir is not None:
        shutil.rmtree(plan.state_dir)


def _await_deleted(admin: AdminClient, topics: list[str], group: str) -> None:
    """Deletion is asynchronous, and so is the removal of the group's offsets on the deleted
    topics. A re-run must find neither: a committed offset left on a repartition topic would
    point past the end of the new, empty one."""
    deadline = time.monotonic() + _TIMEOUT
    gone = set(topics)
    while True:
        left = sorted(gone & set(_existing_topics(admin)))
        if not left:
            left = sorted({t for t, _ in _committed(admin, group)} & gone)
        if not left:
            return
        if time.monotonic() >= deadline:
            raise ResetError(
                f"topics {', '.join(left)} (or group {group!r}'s offsets on them) still exist "
                f"{_TIMEOUT:.0f}s after they were deleted"
            )
        time.sleep(0.2)
