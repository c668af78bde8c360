"""Settings from App kwargs, the environment and the CLI; client_configs.py turns them into
each Kafka client's librdkafka configuration.

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
    # HTTPS (runtime/query/tls.py): the server's certificate (PEM) and key (or in the same
    # file); the CA its clients verify with (else the Kafka client's ssl.ca.location).
    http_tls_cert: str | None = None
    http_tls_key: str | None = None
    http_tls_ca: str | None = None
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
    # Tasks with several inputs (joins): how long to wait for an input at its end before
    # processing the others' records anyway; -1: no timestamp order (runtime/tasks/ordering.py)
    max_task_idle_ms: int = 0
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
    if type(s.max_task_idle_ms) is not int or s.max_task_idle_ms < -1:
        raise ConfigError(
            f"max_task_idle_ms must be an integer of at least -1, got {s.max_task_idle_ms!r}"
        )
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
    if s.http_tls_key is not None and s.http_tls_cert is None:
        raise ConfigError("http_tls_key is set without http_tls_cert: set both (or put the key "
                          "in the certificate's file and set http_tls_cert only)")
    if s.http_tls_cert is not None and s.advertised_url is not None:
        if not s.advertised_url.startswith("https://"):
            raise ConfigError(f"advertised_url={s.advertised_url!r}: the query server serves "
                              "https (http_tls_cert is set); advertise an https:// url")
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
        "max_task_idle_ms",
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


def is_loopback(host: str) -> bool:
    """Whether a bind address is reachable from this machine only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
