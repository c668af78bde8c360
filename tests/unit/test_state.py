"""Store semantics over every backend: overlay, changelog batch, commit, abort, restore, serdes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from eokafka import serdes
from eokafka.state import Backend, StoreError, StoreSpec, open_store
from eokafka.state.backend import InMemoryBackend
from eokafka.state.store import Store

KINDS = ["memory", "sqlite", "rocksdb"]


class SpyBackend:
    """Delegates to a real backend and records every apply, to prove who touched it."""

    def __init__(self, inner: Backend, fail: bool = False) -> None:
        self.inner = inner
        self.applies: list[tuple[dict[bytes, bytes | None], int | None]] = []
        self.fail = fail

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.items()

    def __len__(self) -> int:
        return len(self.inner)

    def apply(self, writes: Mapping[bytes, bytes | None], checkpoint: int | None) -> None:
        if self.fail:
            raise StoreError(None, "disk full (injected)")
        self.applies.append((dict(writes), checkpoint))
        self.inner.apply(writes, checkpoint)

    def checkpoint(self) -> int | None:
        return self.inner.checkpoint()

    def close(self) -> None:
        self.inner.close()

    def destroy(self) -> None:
        self.inner.destroy()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def spied(kind: str, tmp_path: Path, **spec: Any) -> tuple[Store, SpyBackend]:
    store = open_store(StoreSpec("counts", kind, **spec), tmp_path, "app", 0)  # type: ignore[arg-type]
    spy = SpyBackend(store.backend)
    return Store(store.name, spy, store.key_serde, store.value_serde), spy


@pytest.fixture
def store(kind: str, tmp_path: Path) -> Iterator[Store]:
    opened, _ = spied(kind, tmp_path)
    yield opened
    opened.close()


def committed(store: Store, data: dict[Any, Any], checkpoint: int = 10) -> None:
    for key, value in data.items():
        store.put(key, value)
    store.commit(checkpoint)


# ------------------------------------------------------------------------------ overlay


def test_reads_see_own_writes_before_commit(store: Store) -> None:
    store.put("a", {"n": 1})
    assert store.get("a") == {"n": 1}
    assert "a" in store
    assert "b" not in store
    assert store.get("b", "dflt") == "dflt"
    assert dict(store.items()) == {"a": {"n": 1}}
    assert dict(iter(store)) == {"a": {"n": 1}}
    assert len(store) == 1
    assert len(store.backend) == 0  # nothing reached the backend yet


def test_overlay_wins_and_deletes_hide_committed_keys(store: Store) -> None:
    committed(store, {"a": 1, "b": 2, "c": 3})
    store.put("a", 10)
    store.delete("b")
    store.put("c", None)  # a None value is a tombstone, as in Kafka
    store.put("d", 4)
    assert store.get("a") == 10
    assert store.get("b") is None and "b" not in store
    assert store.get("c", "gone") == "gone" and "c" not in store
    assert dict(store.items()) == {"a": 10, "d": 4}
    assert len(store) == 2
    store.delete("never-existed")
    assert len(store) == 2


def test_abort_drops_overlay_without_touching_backend(kind: str, tmp_path: Path) -> None:
    store, spy = spied(kind, tmp_path)
    committed(store, {"a": 1, "b": 2}, checkpoint=7)
    applies_before = len(spy.applies)
    store.put("a", 100)
    store.delete("b")
    store.put("z", 26)
    store.abort()
    assert len(spy.applies) == applies_before  # invariant 4: no backend write, no restore
    assert dict(store.items()) == {"a": 1, "b": 2}
    assert store.checkpoint == 7
    assert dict(store.pending_changelog()) == {}
    store.close()


def test_items_tolerates_writes_while_iterating(store: Store) -> None:
    committed(store, {f"k{i}": i for i in range(20)})
    store.put("new", -1)
    seen = {}
    for key, value in store.items():
        seen[key] = value
        store.put(f"{key}-copy", value)
    assert len(seen) == 21 and seen["new"] == -1


def test_none_key_is_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="keys cannot be None"):
        store.put(None, 1)


# -------------------------------------------------------------------- changelog, commit


def test_pending_changelog_is_last_write_per_key(store: Store) -> None:
    store.put("a", 1)
    store.put("b", 2)
    store.put("a", 3)
    store.delete("b")
    store.put("c", 4)
    store.delete("c")
    pending = store.pending_changelog()
    assert dict(pending) == {b'"a"': b"3", b'"b"': None, b'"c"': None}
    assert list(pending) == [b'"a"', b'"b"', b'"c"']  # first-write order
    with pytest.raises(TypeError):
        pending[b'"x"'] = b"1"  # type: ignore[index]


def test_commit_applies_overlay_and_checkpoint_in_one_write(kind: str, tmp_path: Path) -> None:
    store, spy = spied(kind, tmp_path)
    store.put("a", 1)
    store.put("a", 2)
    store.put("b", 3)
    store.delete("gone")
    store.commit(42)
    assert spy.applies == [({b'"a"': b"2", b'"b"': b"3", b'"gone"': None}, 42)]
    assert store.checkpoint == 42 == spy.inner.checkpoint()
    assert dict(store.pending_changelog()) == {}
    assert dict(spy.inner.items()) == {b'"a"': b"2", b'"b"': b"3"}

    store.commit(None)  # nothing written and no new offset: no backend write at all
    assert len(spy.applies) == 1
    store.put("c", 5)
    store.commit(None)  # data without a new offset keeps the stored checkpoint
    assert store.checkpoint == 42 and store.get("c") == 5
    store.close()


def test_failed_commit_keeps_the_overlay(kind: str, tmp_path: Path) -> None:
    store, spy = spied(kind, tmp_path)
    store.put("a", 1)
    spy.fail = True
    with pytest.raises(StoreError, match="injected"):
        store.commit(3)
    assert store.get("a") == 1 and dict(store.pending_changelog()) == {b'"a"': b"1"}
    assert store.checkpoint is None
    spy.fail = False
    store.commit(3)
    assert store.checkpoint == 3 and dict(spy.inner.items()) == {b'"a"': b"1"}
    store.close()


@pytest.mark.parametrize("bad", [-1, 1.5, "7", True])
def test_offsets_must_be_non_negative_ints(store: Store, bad: Any) -> None:
    with pytest.raises(ValueError, match="non-negative int"):
        store.commit(bad)
    with pytest.raises(ValueError, match="non-negative int"):
        store.restore_batch([], bad)


# ---------------------------------------------------------------------------- restore


def test_restore_batch_last_write_wins_and_tombstones(kind: str, tmp_path: Path) -> None:
    store, spy = spied(kind, tmp_path)
    committed(store, {"old": 0, "kept": 1}, checkpoint=2)
    store.restore_batch(
        [
            (b'"a"', b"1"),
            (b'"b"', b"2"),
            (b'"a"', b"3"),
            (b'"b"', None),
            (b'"old"', None),
            (b'"c"', None),
            (b'"c"', b"9"),
        ],
        next_offset=9,
    )
    assert spy.applies[-1] == (
        {b'"a"': b"3", b'"b"': None, b'"old"': None, b'"c"': b"9"},
        9,
    )
    assert dict(store.items()) == {"a": 3, "c": 9, "kept": 1}
    assert store.checkpoint == 9
    store.close()


def test_restore_guards(store: Store) -> None:
    store.restore_batch([(b'"a"', b"1")], 100)
    with pytest.raises(ValueError, match="back from 100"):
        store.restore_batch([(b'"a"', b"2")], 50)
    store.put("x", 1)
    with pytest.raises(RuntimeError, match="uncommitted"):
        store.restore_batch([(b'"a"', b"2")], 101)


def test_coalesced_restore_writes_once_with_last_offset(kind: str, tmp_path: Path) -> None:
    store, spy = spied(kind, tmp_path)
    store.restore_batch([(b'"a"', b"1"), (b'"b"', b"1")], 2, flush=False)
    store.restore_batch([(b'"a"', b"2"), (b'"c"', b"1")], 4, flush=False)
    assert spy.applies == [] and store.restoring and store.checkpoint is None
    with pytest.raises(RuntimeError, match="flush=True"):
        store.commit(5)
    with pytest.raises(RuntimeError, match="flush=True"):
        store.pending_changelog()
    with pytest.raises(ValueError, match="back from 4"):
        store.restore_batch([], 3)
    store.restore_batch([(b'"b"', None)], 5, flush=True)
    assert spy.applies == [({b'"a"': b"2", b'"b"': None, b'"c"': b"1"}, 5)]
    assert not store.restoring and store.checkpoint == 5
    assert dict(store.items()) == {"a": 2, "c": 1}
    store.close()


def test_coalesced_restore_flushes_when_the_buffer_fills(kind: str, tmp_path: Path) -> None:
    store, spy = spied(kind, tmp_path)
    store.restore_buffer_bytes = 1000
    offset = 0
    for batch in range(10):
        records = [(f'"k{batch}-{i}"'.encode(), b"x" * 50) for i in range(5)]
        offset += len(records)
        store.restore_batch(records, offset, flush=False)
    assert 1 <= len(spy.applies) < 10
    assert all(ckpt is not None and ckpt % 5 == 0 for _, ckpt in spy.applies)
    store.restore_batch([], offset, flush=True)
    assert store.checkpoint == 50 and len(store) == 50
    store.close()


# ----------------------------------------------------------------------------- serdes


def test_string_keys_and_json_values(kind: str, tmp_path: Path) -> None:
    store, spy = spied(kind, tmp_path, key_serde=serdes.String())
    store.put("user-1", {"name": "Zoë", "n": [1, 2]})
    assert dict(store.pending_changelog()) == {b"user-1": b'{"name":"Zo\xc3\xab","n":[1,2]}'}
    store.commit(1)
    assert spy.inner.get(b"user-1") is not None
    assert store.get("user-1") == {"name": "Zoë", "n": [1, 2]}
    assert dict(store.items()) == {"user-1": {"name": "Zoë", "n": [1, 2]}}
    with pytest.raises(serdes.SerdeError):
        store.put(123, 1)
    store.close()


def test_bytes_identity_serdes(kind: str, tmp_path: Path) -> None:
    spec = {"key_serde": serdes.Bytes(), "value_serde": serdes.Bytes()}
    store, spy = spied(kind, tmp_path, **spec)
    store.put(b"\x00k", b"\xffv")
    store.put(bytearray(b"ba"), memoryview(b"mv"))  # converted by the serde, not stored as-is
    assert dict(store.pending_changelog()) == {b"\x00k": b"\xffv", b"ba": b"mv"}
    store.commit(2)
    assert store.get(b"\x00k") == b"\xffv" and store.get(b"ba") == b"mv"
    assert type(store.get(b"ba")) is bytes
    assert dict(store.items()) == {b"\x00k": b"\xffv", b"ba": b"mv"}
    with pytest.raises(serdes.SerdeError):
        store.put("text", b"v")  # a str key must not slip past the identity fast path
    store.close()


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


@pytest.mark.parametrize("backend", ["auto", "json"])
def test_a_store_of_many_json_keys_holds_their_bytes_not_the_serializers_buffers(
    backend: str,
) -> None:
    """orjson's output keeps its 1 to 4 KiB write buffer: 100,000 kept keys and values were
    ~800 MB of resident memory; sized exactly they are a few tens of MB."""
    json = serdes.Json(backend=backend)  # type: ignore[arg-type]
    store = Store("big", InMemoryBackend(), json, json)
    before = _rss_bytes()
    for i in range(100_000):
        store.put(f"key-{i}", {"total": i})
    store.commit(None)
    grown = _rss_bytes() - before
    assert grown < 200 * 1024 * 1024, f"100,000 small entries took {grown / 1e6:.0f} MB"
    assert store.get("key-99999") == {"total": 99999}
    assert json.serialize_kept({"a": [1, "é"]}) == json.serialize({"a": [1, "é"]})
    text = 'k"é\n\x00'
    assert json.serialize_kept(text) == json.serialize(text) == b'"k\\"\xc3\xa9\\n\\u0000"'
    assert json.serialize_kept(None) is None
    with pytest.raises(serdes.SerdeError, match="surrogates"):
        json.serialize_kept("\ud800")  # a str key takes its own path: same verdict


# ------------------------------------------------------------------------------ memos


def test_keys_and_values_equal_across_types_stay_apart(kind: str, tmp_path: Path) -> None:
    """1 == 1.0 == True, but their JSON differs: the serde memos must never mix them up."""
    store, _ = spied(kind, tmp_path)
    for key in (1, True, 1.0, "1", b"1"[0]):
        store.put(key, key)
    store.put("int", 1)
    store.put("bool", True)
    store.put("float", 1.0)
    assert dict(store.pending_changelog()) == {
        b"1": b"1", b"true": b"true", b"1.0": b"1.0", b'"1"': b'"1"', b"49": b"49",
        b'"int"': b"1", b'"bool"': b"true", b'"float"': b"1.0",
    }  # fmt: skip
    store.commit(1)
    got = {k: store.get(k) for k in ("int", "bool", "float")}
    assert got == {"int": 1, "bool": True, "float": 1.0}
    assert [type(v) for v in got.values()] == [int, bool, float]
    store.close()


def test_mutable_values_are_read_fresh_every_time(kind: str, tmp_path: Path) -> None:
    store, _ = spied(kind, tmp_path)
    store.put("k", {"n": [1]})
    store.commit(1)
    first = store.get("k")
    first["n"].append(2)  # the caller's copy, not the store's
    assert store.get("k") == {"n": [1]}
    store.put("c", 7)
    store.put("c", store.get("c") + 1)
    assert store.get("c") == 8 and store.get("k") == {"n": [1]}
    store.close()


def test_remembered_values_follow_aborts_and_restores(kind: str, tmp_path: Path) -> None:
    store, _ = spied(kind, tmp_path)
    committed(store, {"k": 5}, 3)
    store.put("k", store.get("k") + 1)
    assert store.get("k") == 6
    store.abort()
    assert store.get("k") == 5
    store.restore_batch([(b'"k"', b"9"), (b'"j"', b"5")], 8)
    assert (store.get("k"), store.get("j")) == (9, 5)
    store.close()


def test_serde_memos_stay_bounded(tmp_path: Path) -> None:
    from eokafka.state.store import _MEMO_BYTES, _MEMO_ENTRIES

    store = Store("m", InMemoryBackend())
    for i in range(3 * _MEMO_ENTRIES):
        store.put(f"key-{i}", i)
        assert store.get(f"key-{i}") == i
    store.put("x" * (_MEMO_BYTES + 1), "y" * (_MEMO_BYTES + 1))
    memos = (store._key_memo, store._encoded, store._decoded or {})
    assert all(0 < len(memo) <= _MEMO_ENTRIES for memo in memos)
    assert "x" * (_MEMO_BYTES + 1) not in store._key_memo
    assert "y" * (_MEMO_BYTES + 1) not in store._encoded
    assert store.get("key-5") == 5 and store.get("x" * (_MEMO_BYTES + 1)) == "y" * 65
