"""The librdkafka configuration of each Kafka client eokafka creates, built from Settings.

eokafka owns the settings exactly-once rests on (transactional.id, isolation.level, the group
and its offsets: config.PROTECTED_KEYS); ``config`` keys prefixed ``consumer.``/``producer.``
reach that client only, unprefixed ones every client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eokafka.config import Settings
from eokafka.errors import ConfigError
from eokafka.logs import librdkafka_logger

# Keyed records go where the Java client, Kafka Streams and Kafka Connect put them
# (murmur2 of the key, as Kafka's Utils.murmur2), so that a join or a co-partitioned store
# finds a key on the partition other clients wrote it to (docs/architecture.md invariant 15).
# librdkafka's own default, consistent_random, hashes keys with CRC32. Null keys get a random
# partition (sticky for sticky.partitioning.linger.ms, as the Java client's sticky partitions);
# an empty key is hashed like any other. A ``partitioner`` in ``config`` replaces it.
DEFAULT_PARTITIONER = "murmur2_random"


def _split_config(config: Mapping[str, str], client: str) -> dict[str, str]:
    """Keys prefixed ``consumer.``/``producer.`` go to that client only; the rest to all.

    The admin client gets only the unprefixed keys (security settings and the like).
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        if key.startswith(f"{client}."):
            out[key.removeprefix(f"{client}.")] = value
        elif not key.startswith(("consumer.", "producer.")):
            out[key] = value
    return out


# The group protocol and assignor settings, and what each value gives (see the README's
# "Rebalancing" section): partition p of co-partitioned topics must reach one member.
GROUP_PROTOCOLS = ("classic", "consumer")
# Classic protocol, client-side assignors: range keeps co-partitioning (same partition
# count, same subscription); roundrobin and cooperative-sticky spread each topic on its own.
_CLASSIC_ASSIGNORS = {"range": True, "roundrobin": False, "cooperative-sticky": False}
# KIP-848, broker-side assignors: range co-partitions, uniform does not.
_REMOTE_ASSIGNORS = {"range": True, "uniform": False}
_CLASSIC_ONLY = ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy")


def _consumer_setting(s: Settings, key: str) -> str | None:
    for prefixed in (f"consumer.{key}", key):
        if prefixed in s.config:
            return str(s.config[prefixed]).strip()
    return None


def rebalance_protocol(s: Settings) -> str:
    """``eager`` (classic range, the default), ``cooperative`` (classic cooperative-sticky)
    or ``consumer`` (KIP-848): how partitions move, hence how the worker assigns them."""
    if (_consumer_setting(s, "group.protocol") or "classic").lower() == "consumer":
        return "consumer"
    strategy = (_consumer_setting(s, "partition.assignment.strategy") or "range").lower()
    return "cooperative" if strategy == "cooperative-sticky" else "eager"


def _group_settings(s: Settings, copartitioned: bool) -> dict[str, Any]:
    """The consumer's group protocol settings, refusing those that would break
    co-partitioning (a store fed by several topics needs partition p of each on one member)
    or that the protocol does not accept."""
    protocol = (_consumer_setting(s, "group.protocol") or "classic").lower()
    if protocol not in GROUP_PROTOCOLS:
        raise ConfigError(
            f"group.protocol={protocol!r}: choose classic (the default) or consumer (KIP-848)"
        )
    why = "a store is fed by more than one input topic, and only range keeps partition p of " \
        "every such topic on the same worker"
    if protocol == "consumer":
        for key in _CLASSIC_ONLY:
            if _consumer_setting(s, key) is not None:
                raise ConfigError(
                    f"{key} is a classic group protocol setting; with group.protocol=consumer "
                    "the broker decides it (group.consumer.* broker configs): remove it"
                )
        assignor = (_consumer_setting(s, "group.remote.assignor") or "range").lower()
        if assignor not in _REMOTE_ASSIGNORS:
            raise ConfigError(
                f"group.remote.assignor={assignor!r}: eokafka supports range (the default) "
                "and uniform, whose placement of co-partitioned topics it knows"
            )
        if copartitioned and not _REMOTE_ASSIGNORS[assignor]:
            raise ConfigError(f"group.remote.assignor={assignor!r} is refused: {why}")
        return {"group.protocol": "consumer", "group.remote.assignor": assignor}
    if _consumer_setting(s, "group.remote.assignor") is not None:
        raise ConfigError(
            "group.remote.assignor applies only to group.protocol=consumer; with the classic "
            "protocol set partition.assignment.strategy instead"
        )
    strategy = (_consumer_setting(s, "partition.assignment.strategy") or "range").lower()
    if strategy not in _CLASSIC_ASSIGNORS:
        raise ConfigError(
            f"partition.assignment.strategy={strategy!r}: choose one of "
            f"{', '.join(_CLASSIC_ASSIGNORS)} (one strategy: every worker of the group must "
            "use the same)"
        )
    if copartitioned and not _CLASSIC_ASSIGNORS[strategy]:
        raise ConfigError(f"partition.assignment.strategy={strategy!r} is refused: {why}")
    return {
        "partition.assignment.strategy": strategy,
        "session.timeout.ms": _consumer_setting(s, "session.timeout.ms") or 45_000,
    }


_URL_MARK = " @"  # in a consumer's client.id, before the query url it advertises


def consumer_client_id(s: Settings, instance_id: str, url: str | None = None) -> str:
    """The group consumer's client.id: it names the instance and, with a query server, ends
    with `` @<url>``, the address the other workers read from the group's description."""
    base = f"{s.application_id}-{instance_id}-consumer"
    return base if url is None else f"{base}{_URL_MARK}{url}"


def client_id_parts(client_id: str) -> tuple[str, str | None]:
    """A group member's client.id (``consumer_client_id``) and the query url it advertises."""
    base, mark, url = client_id.partition(_URL_MARK)
    return base, (url or None) if mark else None


def consumer_config(
    s: Settings, instance_id: str, copartitioned: bool = False, url: str | None = None
) -> dict[str, Any]:
    """The group consumer's settings; ``copartitioned``: some store spans input topics;
    ``url``: this worker's query server, advertised in its client.id."""
    conf: dict[str, Any] = {
        "bootstrap.servers": s.bootstrap_servers,
        "logger": librdkafka_logger(),
        "client.id": consumer_client_id(s, instance_id, url),
        "auto.offset.reset": s.auto_offset_reset,
        "enable.partition.eof": False,
        "allow.auto.create.topics": False,
        # With queued.min.messages prefetched, librdkafka stops fetching for this long, not
        # until the loop drains the queue: at its default (1 s) the loop waits on an empty
        # queue for most of each second (benchmarks/README.md, "Consumer prefetch").
        "fetch.queue.backoff.ms": 10,
    }
    conf.update(_split_config(s.config, "consumer"))
    conf.update(_group_settings(s, copartitioned))
    conf.update(
        {
            "group.id": s.application_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
        }
    )
    if s.static_membership:
        conf["group.instance.id"] = instance_id
    return conf


def producer_config(s: Settings, instance_id: str) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": s.bootstrap_servers,
        "logger": librdkafka_logger(),
        "client.id": f"{s.application_id}-{instance_id}-producer",
        "linger.ms": 5,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        "delivery.report.only.error": True,
        "allow.auto.create.topics": False,
        "partitioner": DEFAULT_PARTITIONER,
    }
    conf.update(_split_config(s.config, "producer"))
    conf.update(
        {
            "transactional.id": f"{s.application_id}-{instance_id}",
            "enable.idempotence": True,
            "transaction.timeout.ms": s.transaction_timeout_ms,
        }
    )
    return conf


def client_keys(s: Settings, client: str) -> dict[str, str]:
    """The ``config`` keys for one client (``consumer`` or ``producer``): its prefixed keys
    and the unprefixed ones (security settings and the like)."""
    return _split_config(s.config, client)


def partitioner(s: Settings) -> str:
    """The partitioner the app's producers use: ``DEFAULT_PARTITIONER`` unless configured."""
    return str(_split_config(s.config, "producer").get("partitioner", DEFAULT_PARTITIONER))


def admin_config(s: Settings) -> dict[str, Any]:
    # Without this, a metadata request for a missing topic creates it on brokers that
    # allow auto-creation, and the check for missing topics would hide them.
    conf: dict[str, Any] = {
        "bootstrap.servers": s.bootstrap_servers,
        "logger": librdkafka_logger(),
        "client.id": f"{s.application_id}-admin",
    }
    conf.update(_split_config(s.config, "admin"))
    conf["allow.auto.create.topics"] = False
    return conf


def restore_consumer_config(s: Settings) -> dict[str, Any]:
    """The restore consumer reads changelogs by assign(); it never joins a group, and never
    moves to another offset by itself: an offset out of range is an error the store handles
    (wipe and restore in full), not a silent jump."""
    conf: dict[str, Any] = {
        "bootstrap.servers": s.bootstrap_servers,
        "logger": librdkafka_logger(),
        "client.id": f"{s.application_id}-restore",
        "fetch.max.bytes": 64 * 1024 * 1024,
        # Keep fetching while a batch is applied: librdkafka otherwise backs off a full
        # second once its local queue holds queued.min.messages. The prefetch is bounded
        # by size instead (benchmarks/restore.py).
        "queued.min.messages": 1_000_000,
        "queued.max.messages.kbytes": 16_384,
        "fetch.queue.backoff.ms": 10,
        # A restore ends at a partition EOF, which librdkafka reports only after a fetch that
        # came back empty; the broker holds such a fetch for fetch.wait.max.ms (500 ms by
        # default), the floor of every restore of a small store.
        "fetch.wait.max.ms": 10,
    }
    conf.update(_split_config(s.config, "consumer"))
    conf.update(
        {
            "group.id": f"{s.application_id}-restore",  # never joins: assign() only
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "error",
        }
    )
    return conf


def standby_consumer_config(s: Settings, instance_id: str) -> dict[str, Any]:
    """Standby replicas tail changelogs like a restore (assign only, read_committed, strict
    offsets) with a consumer of their own, so that their records never mix with a restore's."""
    conf = restore_consumer_config(s)
    conf["client.id"] = f"{s.application_id}-{instance_id}-standby"
    conf["group.id"] = f"{s.application_id}-standby"  # never joins: assign() only
    # A standby tails: the broker may hold its empty fetches for librdkafka's default.
    conf["fetch.wait.max.ms"] = _split_config(s.config, "consumer").get("fetch.wait.max.ms", 500)
    return conf


def global_consumer_config(s: Settings, instance_id: str) -> dict[str, Any]:
    """The global table reader's: a restore consumer (assign only, read_committed, never
    jumps) that stays for the worker's life, so an idle fetch waits a little longer."""
    conf = restore_consumer_config(s)
    conf["client.id"] = f"{s.application_id}-{instance_id}-global"
    if "fetch.wait.max.ms" not in _split_config(s.config, "consumer"):
        conf["fetch.wait.max.ms"] = 100
    return conf
