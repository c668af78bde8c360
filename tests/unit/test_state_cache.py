"""The committed-value read cache: every way the backend changes keeps a store's reads right."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from eokafka.state import RocksBackend, StoreError, StoreSpec, open_store
from eokafka.state.cache import CommittedReads
from eokafka.state.store import Store

KINDS = ["memory", "sqlite", "rocksdb"]
KEYS = [f"k{i}" for i in range(12)]


def _open(kind: str, tmp_path: Path) -> Store:
    return open_store(StoreSpec("counts", kind), tmp_path, "app", 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(4))
def test_reads_match_a_model_through_commits_aborts_restores_and_reopens(
    kind: str, seed: int, tmp_path: Path
) -> None:
    """Random transactions over few keys, read after every step, against a plain dict."""
    rng = random.Random(seed)
    store = _open(kind, tmp_path)
    committed: dict[str, int] = {}
    pending: dict[str, int | None] = {}
    offset = 0

    def check() -> None:
        for key in KEYS:
            expected = pending[key] if key in pending else committed.get(key)
            assert store.get(key) == expected, (kind, seed, key)
            assert (key in store) == (expected is not None)

    for _ in range(300):
        step = rng.random()
        key = rng.choice(KEYS)
        if step < 0.35:
            value = rng.randrange(1000)
            store.put(key, value)
            pending[key] = value
        elif step < 0.45:
            store.delete(key)
            pending[key] = None
        elif step < 0.6:
            offset += 1
            store.commit(offset)
            for k, v in pending.items():
                if v is None:
                    committed.pop(k, None)
                else:
                    committed[k] = v
            pending.clear()
        elif step < 0.7:
            store.abort()
            pending.clear()
        elif step < 0.85:
            store.abort()  # a restore runs before processing, never under an overlay
            pending.clear()
            for _ in range(rng.randrange(1, 3)):
                batch = [
                    (f'"{rng.choice(KEYS)}"'.encode(), rng.choice([None, b"7", b"8"]))
                    for _ in range(rng.randrange(1, 6))
                ]
                offset += 1
                flush = rng.random() < 0.5
                store.restore_batch(batch, offset, flush=flush)
                for k, v in batch:
                    name = k.decode()[1:-1]
                    if v is None:
                        committed.pop(name, None)
                    else:
                        committed[name] = int(v)
            store.restore_batch([], offset, flush=True)
        elif kind != "memory":
            store.close()  # the state survives in the files; a fresh handle reads them
            store = _open(kind, tmp_path)
            pending.clear()
        check()
    store.close()


def test_rocks_reads_come_from_the_cache_and_follow_every_apply(tmp_path: Path) -> None:
    backend = RocksBackend(tmp_path / "db")
    backend.apply({b"a": b"1", b"b": b"2"}, 1)
    read = backend.committed_get
    assert read(b"a") == b"1" and read(b"zz") is None
    assert backend._reads == {b"a": b"1", b"b": b"2", b"zz": None}  # written, then read
    backend.apply({b"a": None, b"zz": b"3"}, 2)
    assert read(b"a") is None and read(b"zz") == b"3" and read(b"b") == b"2"
    with pytest.raises((StoreError, TypeError)):
        backend.apply({b"b": b"9", ("not", "bytes"): b"3"}, 3)  # type: ignore[dict-item]
    assert read(b"b") == b"2" and backend.checkpoint() == 2
    backend.close()
    with pytest.raises(StoreError, match="closed"):
        read(b"b")  # a closed store fails its reads, cached or not
    backend.destroy()


def test_the_cache_stays_within_its_bound() -> None:
    backing = {f"k{i}".encode(): b"v" * 50 for i in range(1000)}
    cache = CommittedReads(backing.get, limit_bytes=20_000)
    for key in list(backing):
        assert cache[key] == backing[key]
        assert len(cache) <= 20_000 // 150
    backing[b"x"] = b"1"
    cache.wrote({b"x": b"1"})
    assert cache[b"x"] == b"1"
    big = {f"n{i}".encode(): b"2" for i in range(1000)}
    backing.update(big)
    cache.wrote(big)  # more than the bound: nothing kept, read back when used
    assert len(cache) == 0 and cache[b"x"] == b"1" and cache[b"n1"] == b"2"
