"""Settings from App kwargs, the environment and the CLI, and librdkafka config assembly.

Precedence, lowest to highest: built-in defaults < ``App(...)`` keyword arguments <
``EOKAFKA_*`` environment variables < ``eokafka run`` options. Deploy-time settings thus
override what the code says, as twelve-factor deployments expect.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from eokafka import redact
from eokafka.errors import ConfigError
from eokafka.logs import librdkafka_logger
from eokafka.on_error import ACTIONS

ON_ERROR_POLICIES = ACTIONS  # the words; a handler is code, kept by the topology

# librdkafka settings eokafka owns: overriding any of them would break exactly-once.
PROTECTED_KEYS = frozenset(
    {
        "group.id",
        "group.instance.id",
        "transactional.id",
        "enable.idempotence",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "isolation.level",
        "bootstrap.servers",
    }
)
# librdkafka settings that are eokafka settings under another name.
ALIASED_KEYS = {"transaction.timeout.ms": "transaction_timeout_ms"}
# Keyed records go where the Java client, Kafka Streams and Kafka Connect put them
# (murmur2 of the key, as Kafka's Utils.murmur2), so that a join or a co-partitioned store
# finds a key on the partition other clients wrote it to (docs/architecture.md invariant 15).
# librdkafka's own default, consistent_random, hashes keys with CRC32. Null keys get a random
# partition (sticky for sticky.partitioning.linger.ms, as the Java client's sticky partitions);
# an empty key is hashed like any other. A ``partitioner`` in ``config`` replaces it.
DEFAULT_PARTITIONER = "murmur2_random"


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "eokafka")


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs besides the topology."""

    application_id: str
    bootstrap_servers: str = "127.0.0.1:9092"
    processes: int = 1
    instance_id: str | None = None
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    # The query server (eokafka/runtime/query): its own port, +i for worker i, on loopback
    # unless told otherwise; a token is required when bound elsewhere.
    http_port: int | None = None
    http_host: str = "127.0.0.1"
    advertised_url: str | None = None  # how other workers reach this one (+i per worker)
    http_token: str | None = None
    state_dir: str = field(default_factory=default_state_dir)
    commit_interval_ms: int = 100
    commit_every: int = 10_000
    transaction_timeout_ms: int = 10_000
    on_error: str = "fail"
    create_topics: bool = False
    partitions: int | None = None  # of the topics create_topics creates (None: see app_topics)
    static_membership: bool = True
    leave_group_on_stop: bool = True
    auto_offset_reset: str = "earliest"
    batch_size: int = 1_000
    purge_interval_ms: int = 30_000
    num_standby_replicas: int = 0
    config: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        redact.remember(self.config)
        redact.remember({"http_token": self.http_token or ""})
        validate(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled in a worker process (--processes N): remember its secrets there too."""
        self.__dict__.update(state)
        redact.remember(self.config)
        redact.remember({"http_token": self.http_token or ""})

    def shown(self) -> dict[str, Any]:
        """Every setting, secret values (passwords, keys, tokens) as ``[redacted]``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "config":
                value = redact.redact_config(value)
            elif f.name == "http_token" and value is not None:
                value = redact.REDACTED
            out[f.name] = value
        return out

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.shown().items())
        return f"Settings({shown})"

    @property
    def dlq_topic(self) -> str:
        return f"{self.application_id}-dlq"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


SETTING_NAMES = tuple(f.name for f in fields(Settings) if f.name != "application_id")


def validate(s: Settings) -> None:
    if not s.application_id or any(c.isspace() for c in s.application_id):
        raise ConfigError(f"application id {s.application_id!r} must be non-empty, no spaces")
    if s.transaction_timeout_ms < s.commit_interval_ms:
        raise ConfigError(
            f"transaction.timeout.ms ({s.transaction_timeout_ms}) is shorter than "
            f"commit.interval.ms ({s.commit_interval_ms}): every transaction would time out "
            "before it commits; raise transaction_timeout_ms or lower commit_interval_ms"
        )
    if s.on_error not in ON_ERROR_POLICIES:
        raise ConfigError(f"on_error={s.on_error!r}: choose one of {', '.join(ON_ERROR_POLICIES)}")
    positive = ("processes", "commit_interval_ms", "commit_every", "batch_size")
    for name in (*positive, "purge_interval_ms"):
        if getattr(s, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(s, name)}")
    if s.partitions is not None and s.partitions < 1:
        raise ConfigError(f"partitions must be at least 1, got {s.partitions}")
    if type(s.num_standby_replicas) is not int or s.num_standby_replicas < 0:
        raise ConfigError(
            f"num_standby_replicas must be an integer of at least 0, got {s.num_standby_replicas!r}"
        )
    if s.http_port is not None and not s.http_token and not is_loopback(s.http_host):
        raise ConfigError(
            f"http_host={s.http_host!r} serves queries beyond this machine: set http_token "
            "(EOKAFKA_HTTP_TOKEN) so that requests must carry it as a bearer token"
        )
    if s.auto_offset_reset not in ("earliest", "latest"):
        raise ConfigError(f"auto_offset_reset={s.auto_offset_reset!r}: earliest or latest")
    for key in s.config:
        bare = key.split(".", 1)[1] if key.startswith(("consumer.", "producer.")) else key
        if bare in PROTECTED_KEYS:
            raise ConfigError(
                f"librdkafka setting {bare!r} is managed by eokafka for exactly-once "
                "and cannot be overridden"
            )


def parse_config_pairs(pairs: list[str] | str, source: str) -> dict[str, str]:
    """Parse ``key=value`` items (a list, or one string separated by ';')."""
    items = pairs.split(";") if isinstance(pairs, str) else pairs
    out: dict[str, str] = {}
    for item in items:
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: {item!r} is not of the form librdkafka.key=value")
        out[key.strip()] = value.strip()
    return out


_INT_SETTINGS = frozenset(
    {
        "processes",
        "metrics_port",
        "http_port",
        "commit_interval_ms",
        "commit_every",
        "transaction_timeout_ms",
        "batch_size",
        "purge_interval_ms",
        "num_standby_replicas",
        "partitions",
    }
)
_BOOL_SETTINGS = frozenset({"create_topics", "static_membership", "leave_group_on_stop"})


def _coerce(name: str, raw: Any, source: str) -> Any:
    """Turn strings (from the environment) into the setting's type; leave typed values be."""
    if not isinstance(raw, str):
        return raw
    if name in _BOOL_SETTINGS:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{source}: {raw!r} is not a boolean")
    if name in _INT_SETTINGS:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{source}: {raw!r} is not an integer") from None
    return raw


def from_environment(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings given as ``EOKAFKA_<NAME>`` variables, e.g. EOKAFKA_BOOTSTRAP_SERVERS."""
    out: dict[str, Any] = {}
    for name in SETTING_NAMES:
        var = f"EOKAFKA_{name.upper()}"
        if var not in env:
            continue
        if name == "config":
            out[name] = parse_config_pairs(env[var], var)
        else:
            out[name] = _coerce(name, env[var], var)
    return out


def resolve(
    application_id: str,
    app_kwargs: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the three sources; ``config`` dicts merge key by key in the same order."""
    merged: dict[str, Any] = {}
    librdkafka: dict[str, str] = {}
    sources = (("App()", app_kwargs), ("environment", from_environment(env or os.environ)))
    for source, values in (*sources, ("command line", cli or {})):
        for name, value in values.items():
            if value is None:
                continue
            if name not in SETTING_NAMES:
                raise ConfigError(f"{source}: unknown setting {name!r}")
            if name == "config":
                librdkafka.update({str(k): str(v) for k, v in dict(value).items()})
            else:
                merged[name] = _coerce(name, value, f"{source} {name}")
    for key, name in ALIASED_KEYS.items():
        for prefixed in (key, f"producer.{key}"):
            if prefixed in librdkafka:
                merged[name] = _coerce(name, librdkafka.pop(prefixed), f"config {prefixed}")
    return Settings(application_id=application_id, config=librdkafka, **merged)


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


def is_loopback(host: str) -> bool:
    """Whether a bind address is reachable from this machine only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


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
