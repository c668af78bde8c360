"""State stores: per-task key/value state backed by compacted changelog topics.

This package knows nothing of Kafka clients or the worker loop. The runtime produces
:meth:`Store.pending_changelog` inside the transaction, calls :meth:`Store.commit` once
Kafka committed (or :meth:`Store.abort`), and feeds :meth:`Store.restore_batch` from a restore
consumer. Persistent files live at ``<state_dir>/<application_id>/stores/<store>/<partition>/``.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from eokafka.serdes import Json, Serde
from eokafka.state.backend import (
    Backend,
    InMemoryBackend,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
)
from eokafka.state.global_store import GlobalStore
from eokafka.state.store import Store, StoreRecordTooLargeError
from eokafka.state.stream_time import StreamTimeStore, stream_time_store
from eokafka.state.timers import TimerStore, timer_store
from eokafka.state.window import WindowStore

if TYPE_CHECKING:
    from eokafka.state.rocks import RocksBackend
    from eokafka.state.sqlite import SqliteBackend

__all__ = [
    "Backend",
    "BackendKind",
    "GlobalStore",
    "InMemoryBackend",
    "RocksBackend",
    "SqliteBackend",
    "Store",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreRecordTooLargeError",
    "StoreSpec",
    "StreamTimeStore",
    "TimerStore",
    "WindowStore",
    "changelog_topic",
    "open_store",
    "store_dir",
    "stream_time_store",
    "timer_store",
    "wipe_store",
]

BackendKind = Literal["memory", "sqlite", "rocksdb"]
_KINDS: Final = frozenset(get_args(BackendKind))
# Store names become topic names and directory names: Kafka's topic alphabet fits both.
_NAME: Final = re.compile(r"[A-Za-z0-9._-]+")
_MAX_TOPIC: Final = 249
SQLITE_FILE: Final = "store.sqlite3"
ROCKSDB_DIR: Final = "rocksdb"


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"{what} {name!r} must be letters, digits, '.', '_' or '-' "
            "(it becomes part of a topic name and a directory name)"
        )


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """How a topology declares a store; the runtime opens one :class:`Store` per task from it.

    In memory by default; ``rocksdb`` is the persistent backend to pick: it restored
    changelogs fastest in benchmarks/store_backends.py and keeps only its working set in memory.
    """

    name: str
    backend: BackendKind = "memory"
    key_serde: Serde = field(default_factory=Json)
    value_serde: Serde = field(default_factory=Json)
    # Set for the store of a windowed aggregation: it opens as a WindowStore, and its
    # changelog also deletes records older than this (closed windows are tombstoned anyway).
    window_retention_ms: int | None = None
    # Set for the store that keeps the stream time of the window store of this name: it
    # opens as a StreamTimeStore, its changelog compacted only (retention can't delete it).
    stream_time_of: str | None = None
    # Set for the store of a processor's timers (eokafka.timers): it opens as a TimerStore.
    timers_of: str | None = None

    def __post_init__(self) -> None:
        _check_name("store name", self.name)
        if self.backend not in _KINDS:
            raise ValueError(
                f"store {self.name!r}: backend must be one of {sorted(_KINDS)}, "
                f"not {self.backend!r}"
            )
        retention = self.window_retention_ms
        if retention is not None and (type(retention) is not int or retention <= 0):
            raise ValueError(f"store {self.name!r}: window_retention_ms must be a positive int")
        if retention is not None and self.stream_time_of is not None:
            raise ValueError(f"store {self.name!r}: a window store or a stream time store")

    def changelog_config(self) -> dict[str, str]:
        """Topic configs of the changelog: compacted, and for window stores time-limited."""
        if self.window_retention_ms is None:
            return {"cleanup.policy": "compact"}
        return {"cleanup.policy": "compact,delete", "retention.ms": str(self.window_retention_ms)}


def changelog_topic(application_id: str, store_name: str) -> str:
    """The compacted topic that makes a store durable (invariant 6)."""
    _check_name("application id", application_id)
    _check_name("store name", store_name)
    topic = f"{application_id}-{store_name}-changelog"
    if len(topic) > _MAX_TOPIC:
        raise ValueError(f"changelog topic {topic!r} is longer than Kafka's {_MAX_TOPIC} chars")
    return topic


def store_dir(state_dir: Path | str, application_id: str, store_name: str, partition: int) -> Path:
    """Where one task's files for one store live; wiping it forces a full restore."""
    _check_name("application id", application_id)
    _check_name("store name", store_name)
    if type(partition) is not int or partition < 0:
        raise ValueError(f"partition must be a non-negative int, not {partition!r}")
    return Path(state_dir) / application_id / "stores" / store_name / str(partition)


def open_store(
    spec: StoreSpec, state_dir: Path | str, application_id: str, partition: int
) -> Store:
    """Open (or create) the store of one task.

    Raises :class:`StoreCorruptError` naming the path when the files are unreadable; the
    runtime then destroys them and restores from the changelog in full.
    """
    directory = store_dir(state_dir, application_id, spec.name, partition)
    backend: Backend
    if spec.backend == "memory":
        backend = InMemoryBackend()
    elif spec.backend == "sqlite":
        from eokafka.state.sqlite import SqliteBackend

        backend = SqliteBackend(directory / SQLITE_FILE)
    else:
        from eokafka.state.rocks import RocksBackend

        backend = RocksBackend(directory / ROCKSDB_DIR)
    kind: type[Store] = Store
    if spec.window_retention_ms is not None:
        kind = WindowStore
    elif spec.stream_time_of is not None:
        kind = StreamTimeStore
    elif spec.timers_of is not None:
        kind = TimerStore
    return kind(spec.name, backend, spec.key_serde, spec.value_serde)


def wipe_store(state_dir: Path | str, application_id: str, store_name: str, partition: int) -> None:
    """Delete one task's files for a store, e.g. after :class:`StoreCorruptError` on open.

    Only call it with the store closed; the next open starts empty and restores in full.
    """
    shutil.rmtree(store_dir(state_dir, application_id, store_name, partition), ignore_errors=True)


def __getattr__(name: str) -> Any:
    """The persistent backends load sqlite3 or RocksDB's module only for an app that uses one."""
    if name == "SqliteBackend":
        from eokafka.state.sqlite import SqliteBackend

        return SqliteBackend
    if name == "RocksBackend":
        from eokafka.state.rocks import RocksBackend

        return RocksBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
