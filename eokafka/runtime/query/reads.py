"""Reads of one task's committed store state, in the worker loop's thread only.

A store's backend holds exactly what Kafka committed (the open transaction's writes wait in
the store's overlay), and the task's committed input offsets and the store's checkpoint move
with it in the same step (task.py ``commit``): so an answer here is one committed state, with
the offsets it reflects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from eokafka.runtime.query.keys import encode_key
from eokafka.runtime.query.refusal import QueryError
from eokafka.runtime.tasks.changelog_reader import Restore
from eokafka.runtime.tasks.task import Task
from eokafka.state import RocksBackend, Store, StreamTimeStore, WindowStore, stream_time_store
from eokafka.state.window import CLOSE_AT_BYTES, WINDOW_ENTRY
from eokafka.windows.definition import Windows
from eokafka.windows.state import decode_state

MAX_PAGE = 1000


@dataclass(frozen=True)
class KeyQuery:
    store: str
    key: Any  # as the request gave it, read by runtime/query/keys.py
    partition: int
    stale: bool = False  # a standby replica here may answer, with its lag


@dataclass(frozen=True)
class WindowQuery:
    """A key's open windows in a window store that overlap [``start``, ``end``) (ms);
    ``windows``, the aggregation's definition, tells which windows have closed."""

    store: str
    key: Any
    partition: int
    key_bytes: bytes  # by the key serde of the windowed stream
    start: int | None = None
    end: int | None = None
    windows: Windows | None = None


@dataclass(frozen=True)
class ScanQuery:
    """Keys of one partition's store: all (paged by ``after``), a prefix or a range
    [``start``, ``end``) of the key's bytes."""

    store: str
    partition: int
    limit: int = 100
    after: str | None = None  # hex of the last key's bytes of the previous page
    prefix: str | None = None  # text, matched against the start of a key's bytes
    start: Any = None  # keys, read by runtime/query/keys.py
    end: Any = None


def where(task: Task) -> dict[str, Any]:
    """What an answer reflects: the task, and its committed input offsets. An input the
    group never committed shows where the offset reset put it, or None for its beginning:
    the state then reflects none of its records."""
    offsets: dict[str, int | None] = {}
    for tp, offset in sorted(task.committed.items()):
        if offset < 0:
            reset = task.reset_positions.get(tp, -1)
            offsets[f"{tp[0]}[{tp[1]}]"] = reset if reset >= 0 else None
        else:
            offsets[f"{tp[0]}[{tp[1]}]"] = offset
    return {"task": task.name, "partition": task.index, "input_offsets": offsets}


def committed_store(task: Task, name: str, windows: bool = False) -> Store:
    store = task.stores.get(name)
    if store is None or name in task.restores:
        raise QueryError(503, f"store {name!r} of task {task.name} is not open yet", 1.0)
    if isinstance(store, WindowStore) != windows:
        kind = "a window store: ask for its windows" if not windows else "not a window store"
        raise QueryError(400, f"store {name!r} is {kind}")
    return store


def windows(task: Task, query: WindowQuery) -> dict[str, Any]:
    """The key's open windows with their aggregates as the store keeps them (for sliding
    windows, the key's records instead), and what the answer leaves out: a window leaves
    the store when it closes (its final result goes out then), so those ending at or before
    ``closed_through`` (by the committed stream time) are not here. ``complete``: the range
    reaches none of them (None: the window definition is not known)."""
    store = committed_store(task, query.store, windows=True)
    assert isinstance(store, WindowStore)
    data = store.backend.get(WINDOW_ENTRY + query.key_bytes)
    found: list[dict[str, Any]] = []
    if data is not None:
        state = decode_state(data[CLOSE_AT_BYTES:], store.aggregate_serde.deserialize)
        for start, end, aggregate in state.entries:
            if query.end is not None and start >= query.end:
                continue
            if query.start is not None and end <= query.start:
                continue
            found.append({"start": start, "end": end, "value": aggregate})
    clock = task.stores.get(stream_time_store(query.store))
    now = clock.committed_stream_time() if isinstance(clock, StreamTimeStore) else None
    closed = None if now is None or query.windows is None else query.windows.closed_through(now)
    complete = None if query.windows is None else (
        closed is None or query.start is not None and query.start >= closed)
    answer = {
        "store": query.store,
        "key": query.key,
        "windows": found,
        "stream_time": now,
        "closed_through": closed,
        "complete": complete,
        "changelog_offset": store.backend.checkpoint(),
        **where(task),
    }
    if not complete:
        answer["note"] = (
            "a window leaves the store when it closes (stream time past its end and grace): "
            + ("windows ending at or before closed_through" if closed is not None else
               "windows that closed before stream_time")
            + " are not here; their final results are in the output topic"
        )  # fmt: skip
    return answer


def lookup(task: Task, query: KeyQuery) -> dict[str, Any]:
    return _lookup(committed_store(task, query.store), query, where(task))


def standby_lookup(replica: Restore, query: KeyQuery, lag: int | None) -> dict[str, Any]:
    """A key as a standby replica has it: committed (its changelog is read read_committed)
    but maybe behind, by ``lag`` changelog records; it knows no input offsets."""
    shown = {"partition": replica.partition, "standby": True, "lag": lag}
    return _lookup(replica.store, query, shown)


def _lookup(store: Store, query: KeyQuery, shown: dict[str, Any]) -> dict[str, Any]:
    raw = store.backend.get(_key_bytes(store, query.key))
    return {
        "store": query.store,
        "key": query.key,
        "found": raw is not None,
        "value": None if raw is None else _value(store, raw),
        "changelog_offset": store.backend.checkpoint(),
        **shown,
    }


def scan(task: Task, query: ScanQuery) -> dict[str, Any]:
    """A page of keys in the order of their bytes. RocksDB streams its keys in that order;
    the other backends' committed keys are sorted for each page (O(n log n) in the loop)."""
    store = committed_store(task, query.store)
    ordered = isinstance(store.backend, RocksBackend)
    limit = max(1, min(query.limit, MAX_PAGE))
    prefix = None
    if query.prefix is not None:  # a JSON string's closing quote is not part of a prefix
        prefix = _key_bytes(store, query.prefix).removesuffix(b'"')
    start = None if query.start is None else _key_bytes(store, query.start)
    end = None if query.end is None else _key_bytes(store, query.end)
    after = None if query.after is None else bytes.fromhex(query.after)
    pairs = _pairs(store, ordered)
    page: list[dict[str, Any]] = []
    last: bytes | None = None
    more = False
    for key, value in pairs:
        if after is not None and key <= after:
            continue
        if start is not None and key < start:
            continue
        if prefix is not None and not key.startswith(prefix):
            if key > prefix:
                break
            continue
        if end is not None and key >= end:
            break
        if len(page) == limit:
            more = True
            break
        page.append({"key": store.key_serde.deserialize(key), "value": _value(store, value)})
        last = key
    return {
        "store": query.store,
        "items": page,
        "next": last.hex() if more and last is not None else None,
        "changelog_offset": store.backend.checkpoint(),
        **where(task),
    }


def _pairs(store: Store, ordered: bool) -> Iterator[tuple[bytes, bytes]]:
    """Committed pairs by key bytes: the backend's order, or sorted for a dict in memory."""
    return store.backend.items() if ordered else iter(sorted(store.backend.items()))


def _key_bytes(store: Store, key: Any) -> bytes:
    return encode_key(key, store.key_serde, store.name)


def _value(store: Store, raw: bytes) -> Any:
    return store.value_serde.deserialize(raw)
