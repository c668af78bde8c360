"""The window store's decoded states and the stream time store's int never show what the
store lacks.

Each test writes through the per-record API the windowed DSL uses, then replaces, aborts,
commits, restores or refuses a write, and checks that reads give what the raw bytes say.
"""

from __future__ import annotations

from typing import Any

import pytest

from eokafka import serdes, windows
from eokafka.state import (
    InMemoryBackend,
    StoreRecordTooLargeError,
    StreamTimeStore,
    WindowStore,
)
from eokafka.windows import KeyState, Windowed, WindowedSerde, decode_state, encode_state

J = serdes.Json()


def _store() -> WindowStore:
    return WindowStore("w", InMemoryBackend(), value_serde=J)


def _decode(payload: bytes) -> KeyState:
    return decode_state(payload, J.deserialize)


def _put(store: WindowStore, key: bytes, state: KeyState, cache: bool = True) -> None:
    store.put_entry(key, state.entries[0][1], encode_state(state, J.serialize), None,
                    state if cache else None)  # fmt: skip


def _count(store: WindowStore, key: bytes) -> Any:
    found = store.state(key, _decode)
    assert found is not None
    return found[1].entries[0][2]


def test_a_cached_state_comes_back_only_while_its_write_is_the_value() -> None:
    store = _store()
    state = KeyState([[0, 10, 1]])
    _put(store, b"k", state)
    found = store.state(b"k", _decode)
    assert found is not None and found[1] is state  # no decode: the object written
    # Another write of the key (here without a decoded object) replaces the cached one.
    _put(store, b"k", KeyState([[0, 10, 7]]), cache=False)
    again = store.state(b"k", _decode)
    assert again is not None and again[1] is not state and again[1].entries == [[0, 10, 7]]


def test_a_taken_state_changed_by_a_failed_write_is_not_handed_out_again() -> None:
    store = _store()
    _put(store, b"k", KeyState([[0, 10, 1]]))
    found = store.state(b"k", _decode)
    assert found is not None
    state = found[1]
    state.entries[0][2] = "x" * 100  # changed in place, then its write is refused
    store.max_record_bytes = 50
    with pytest.raises(StoreRecordTooLargeError):
        _put(store, b"k", state)
    assert _count(store, b"k") == 1  # what the store holds, decoded again


def test_an_abort_drops_the_cached_states() -> None:
    store = _store()
    _put(store, b"k", KeyState([[0, 10, 1]]))
    store.commit(None)
    found = store.state(b"k", _decode)
    assert found is not None
    found[1].entries[0][2] = 2
    _put(store, b"k", found[1])
    assert _count(store, b"k") == 2
    store.abort()
    assert _count(store, b"k") == 1


def test_an_abort_drops_the_cached_stream_time() -> None:
    clock = StreamTimeStore("w-stream-time", InMemoryBackend())
    assert clock.stream_time() is None
    clock.set_stream_time(100)
    clock.commit(None)
    clock.set_stream_time(200)
    assert clock.stream_time() == 200
    assert dict(clock.pending_changelog()) == {b"t": (200).to_bytes(8, "big")}
    clock.abort()
    assert clock.stream_time() == 100


def test_raw_writes_and_restores_are_seen_by_the_stream_time() -> None:
    clock = StreamTimeStore("w-stream-time", InMemoryBackend())
    clock.set_stream_time(5)
    clock.put(b"t", (9).to_bytes(8, "big"))
    assert clock.stream_time() == 9
    clock.delete(b"t")
    assert clock.stream_time() is None
    clock.abort()
    clock.restore_batch([(b"t", (42).to_bytes(8, "big"))], 1)
    assert clock.stream_time() == 42


def test_the_decoded_cache_lasts_one_transaction() -> None:
    store = _store()
    state = KeyState([[0, 10, 1]])
    _put(store, b"k", state)
    store.commit(None)
    found = store.state(b"k", _decode)
    assert found is not None and found[1] is not state and found[1].entries == [[0, 10, 1]]


@pytest.mark.parametrize("key", ["a", b"a", 7, ("t", 1)])
def test_the_windowed_serde_writes_each_key_as_its_inner_serde_does(key: Any) -> None:
    inner = J if not isinstance(key, bytes) else serdes.Bytes()
    serde = WindowedSerde(inner)
    first = serde.serialize(Windowed(key, 0, 10))
    again = serde.serialize(Windowed(key, 10, 20))  # the same key object: encoded once
    other_key = b"b" if isinstance(key, bytes) else "b"
    other = serde.serialize(Windowed(other_key, 10, 20))
    assert first == inner.serialize(key) + (0).to_bytes(8, "big") + (10).to_bytes(8, "big")
    assert again == inner.serialize(key) + (10).to_bytes(8, "big") + (20).to_bytes(8, "big")
    assert other is not None and not other.startswith(inner.serialize(key) or b"-")


def test_tumbling_add_matches_hopping_with_advance_equal_to_size() -> None:
    agg = windows.counting()
    for size, stamps in ((10, [5, 3, 12, 0, 19, 10, 9, 25]), (7, [100, 93, 99, 106, 107])):
        tumbling, hopping = windows.Tumbling(size), windows.Hopping(size, size)
        a, b = KeyState(), KeyState()
        for ts in stamps:
            assert tumbling.add(a, "k", ts, 1, agg, True) == hopping.add(b, "k", ts, 1, agg, True)
            assert a == b and tumbling.next_close(a) == min(e[1] for e in b.entries)
            assert tumbling.is_late(ts, ts + size) == hopping.is_late(ts, ts + size)
