"""A static member stopped on purpose leaves its consumer group at once.

librdkafka never sends a LeaveGroup for a static member (KIP-345): a restarted instance is
meant to take its partitions back without a rebalance. Under KIP-848
(``group.protocol=consumer``) it closes with member epoch -2, "temporarily leaving", and the
coordinator also holds the member's partitions for the session timeout. A worker retired on
purpose (SIGTERM, SIGINT, a bounded run that finished) would leave its partitions idle for
45 s. After ``consumer.close()`` has committed and revoked, :func:`leave_group` removes the
member for good, so the coordinator hands its partitions to the others now:

- classic protocol: LeaveGroup v5 naming the member id and ``group.instance.id``, what the
  Java AdminClient's ``removeMembersFromConsumerGroup`` sends (KIP-345);
- consumer protocol: ConsumerGroupHeartbeat with member epoch -1, the Java consumer's own
  leave (KIP-848).

Both name the member id the worker had, so a successor that already took the instance id is
never removed (the coordinator answers FENCED_INSTANCE_ID). A crashed worker sends nothing,
and its restart still takes its partitions back without a rebalance; under KIP-848 that
needs :func:`release_predecessor` first. Both are bounded in time and never raise: when a
request can't be made they log why, and the session timeout applies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaException

from eokafka.client_configs import consumer_config
from eokafka.config import Settings

if TYPE_CHECKING:  # the wire client (and hashlib, hmac) load when a request is sent
    from eokafka.runtime.group.wire import Connection, Reader, Security

log = logging.getLogger("eokafka.worker")

FIND_COORDINATOR = 10
LEAVE_GROUP = 13
CONSUMER_GROUP_HEARTBEAT = 68
LEAVE_TIMEOUT = 5.0  # seconds a stopping worker spends at most on leaving
_LEAVE_EPOCH = -1  # KIP-848: the member leaves for good
_REJOIN_EPOCH = -2  # KIP-848: a static member leaves and comes back within the session timeout
# Answers after which asking the coordinator again can succeed.
_RETRY = {14: "COORDINATOR_LOAD_IN_PROGRESS", 15: "COORDINATOR_NOT_AVAILABLE",
          16: "NOT_COORDINATOR"}  # fmt: skip
# Answers meaning the member is no longer there to remove: nothing is waiting for it.
_GONE = {25: "UNKNOWN_MEMBER_ID", 69: "GROUP_ID_NOT_FOUND",
         82: "FENCED_INSTANCE_ID (a successor holds the instance id)"}  # fmt: skip
_BACKOFF = 0.1
_LEAVE_FALLBACK = "its partitions move to the other members after the session timeout"
_RELEASE_FALLBACK = "its consumer can join only once the predecessor's session has timed out"


def leave_group(
    settings: Settings, instance_id: str, member_id: str | None, timeout: float = LEAVE_TIMEOUT
) -> bool:
    """Remove this worker's closed static member from its group; True when it is gone.

    Called once on a clean stop, after ``consumer.close()``, with the member id the consumer
    had. Does nothing for dynamic members (librdkafka left on close), when
    ``leave_group_on_stop`` is off (a rolling restart keeps the membership), or when the
    consumer never got a member id.
    """
    if not settings.static_membership or not settings.leave_group_on_stop or not member_id:
        return False
    conf = consumer_config(settings, instance_id)
    group = settings.application_id
    consumer_protocol = _protocol(conf) == "consumer"

    def send(conn: Connection) -> int:
        if consumer_protocol:
            return _heartbeat(conn, group, instance_id, member_id, _LEAVE_EPOCH)
        return _leave_group(conn, group, instance_id, member_id)

    what = ("leave the group on stop", _LEAVE_FALLBACK)
    outcome = _to_coordinator(conf, instance_id, group, what, send, timeout)
    if outcome is None:
        log.info(
            "static member %s left group %r: its partitions move to the other members now",
            instance_id, group,
        )  # fmt: skip
        return True
    if outcome:
        log.info("static member %s of group %r: nothing to leave (%s)", instance_id, group, outcome)
    return False


def release_predecessor(
    settings: Settings, instance_id: str, admin: Any, timeout: float = LEAVE_TIMEOUT
) -> bool:
    """Under KIP-848, let a restarted static member take over from its crashed predecessor.

    A crashed member never said it was leaving, and the coordinator refuses a new member with
    its instance id (UNRELEASED_INSTANCE_ID, fatal to librdkafka) until the session timeout
    has passed. Called before the worker's consumer joins: the predecessor found under this
    instance id is marked "temporarily left" (member epoch -2, what librdkafka sends on a
    clean close), so the new member takes its assignment over at once, without a
    rebalance, and its producer fences the predecessor's transactions as under the classic
    protocol. True when a predecessor was released.
    """
    conf = consumer_config(settings, instance_id)
    if not settings.static_membership or _protocol(conf) != "consumer":
        return False
    group = settings.application_id
    try:
        described = admin.describe_consumer_groups([group], request_timeout=timeout)
        members = described[group].result(timeout=timeout * 2).members
    except (KafkaException, RuntimeError, TimeoutError) as exc:
        log.warning(
            "could not read group %r to release a crashed member with instance id %s: %s",
            group, instance_id, exc,
        )  # fmt: skip
        return False
    found = [m.member_id for m in members if m.group_instance_id == instance_id]
    if not found:
        return False
    predecessor = found[0]

    def send(conn: Connection) -> int:
        return _heartbeat(conn, group, instance_id, predecessor, _REJOIN_EPOCH)

    what = ("release its crashed predecessor", _RELEASE_FALLBACK)
    if _to_coordinator(conf, instance_id, group, what, send, timeout) is not None:
        return False
    log.info(
        "released the previous member %s with instance id %s of group %r: this worker takes "
        "its partitions over without a rebalance", predecessor, instance_id, group,
    )  # fmt: skip
    return True


def _protocol(conf: dict[str, Any]) -> str:
    return str(conf.get("group.protocol", "classic")).lower()


def _to_coordinator(
    conf: dict[str, Any],
    instance_id: str,
    group: str,
    what: tuple[str, str],
    send: Callable[[Connection], int],
    timeout: float,
) -> str | None:
    """Send one request to the group's coordinator: None when it succeeded, else why not
    ("" after a warning already logged). Never raises, and returns within ``timeout``.

    ``what`` is the action and what happens instead when it can't be done, for the warning.
    """
    from eokafka.runtime.group.wire import Connection, Security, Unsupported, WireError

    action, instead = what
    try:
        security = Security.from_config(conf)
    except Unsupported as exc:
        log.warning(
            "static member %s of group %r can't %s: %s is not supported by eokafka's group "
            "requests (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 over PLAINTEXT or TLS are); %s. "
            "With static_membership=False librdkafka leaves on close instead",
            instance_id, group, action, exc, instead,
        )  # fmt: skip
        return ""
    deadline = time.monotonic() + timeout
    client_id = str(conf.get("client.id", "eokafka"))
    try:
        while True:
            host, port = _find_coordinator(conf, security, group, client_id, deadline)
            conn = Connection(host, port, security, client_id, deadline)
            try:
                code = send(conn)
            finally:
                conn.close()
            if code == 0:
                return None
            if code in _GONE:
                return _GONE[code]
            if code not in _RETRY:
                raise WireError(f"the group coordinator {host}:{port} answered error {code}")
            _pause(deadline)
    except (WireError, OSError, ValueError, KeyError) as exc:
        log.warning(
            "static member %s of group %r could not %s (%s): %s",
            instance_id, group, action, str(exc) or type(exc).__name__, instead,
        )  # fmt: skip
        return ""


def _find_coordinator(
    conf: dict[str, Any], security: Security, group: str, client_id: str, deadline: float
) -> tuple[str, int]:
    """Ask the bootstrap brokers, in turn, until one names the group's coordinator."""
    from eokafka.runtime.group.wire import Connection, WireError, Writer, bootstrap_addresses

    addresses = bootstrap_addresses(str(conf["bootstrap.servers"]))
    last = "no bootstrap server"
    while True:
        for host, port in addresses:
            try:
                conn = Connection(host, port, security, client_id, deadline)
            except WireError as exc:
                last = str(exc)
                if time.monotonic() >= deadline:
                    raise
                continue
            try:
                body = Writer().string(group).int8(0).build()  # key type 0: a group
                r = conn.request(FIND_COORDINATOR, 1, body, flexible=False)
            finally:
                conn.close()
            r.int32()  # throttle time
            code, message = r.int16(), r.string()
            node_id, found_host, found_port = r.int32(), r.string(), r.int32()
            if code == 0 and node_id >= 0 and found_host:
                return found_host, found_port
            last = f"FindCoordinator: error {code} {message or ''}".strip()
            if code not in _RETRY:
                raise WireError(last)
        _pause(deadline, last)


def _pause(deadline: float, last: str = "the coordinator kept moving") -> None:
    from eokafka.runtime.group.wire import WireError

    if time.monotonic() + _BACKOFF >= deadline:
        raise WireError(f"timed out: {last}")
    time.sleep(_BACKOFF)


def _leave_group(conn: Connection, group: str, instance_id: str, member_id: str) -> int:
    """LeaveGroup v5 for one static member; the first error code found, else 0."""
    from eokafka.runtime.group.wire import Writer

    w = Writer().compact_string(group).compact_array_len(1)
    w.compact_string(member_id).compact_string(instance_id)
    w.compact_string("eokafka worker stopped on purpose").tags()
    r = conn.request(LEAVE_GROUP, 5, w.tags().build(), flexible=True)
    r.int32()  # throttle time
    code = r.int16()
    if code != 0:
        return code
    for _ in range(r.compact_array_len()):
        r.compact_string()
        r.compact_string()
        member_code = r.int16()
        r.skip_tags()
        if member_code != 0:
            return member_code
    return 0


def _heartbeat(conn: Connection, group: str, instance_id: str, member_id: str, epoch: int) -> int:
    """ConsumerGroupHeartbeat v0 for a static member: epoch -1 leaves for good, -2 for now."""
    from eokafka.runtime.group.wire import Writer

    w = Writer().compact_string(group).compact_string(member_id).int32(epoch)
    w.compact_string(instance_id).compact_string(None)  # rack: unchanged
    w.int32(-1)  # rebalance timeout: unchanged
    w.compact_array_len(None).compact_string(None).compact_array_len(None)
    r: Reader = conn.request(CONSUMER_GROUP_HEARTBEAT, 0, w.tags().build(), flexible=True)
    r.int32()  # throttle time
    return r.int16()
