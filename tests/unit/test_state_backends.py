"""Backends on disk: persistence, crash safety, corruption, locking; the factory and names."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eokafka import serdes
from eokafka.state import (
    InMemoryBackend,
    RocksBackend,
    SqliteBackend,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreSpec,
    changelog_topic,
    open_store,
    store_dir,
    wipe_store,
)
from eokafka.state.store import Store

KINDS = ["memory", "sqlite", "rocksdb"]
PERSISTENT = ["sqlite", "rocksdb"]


def open_counts(kind: str, state_dir: Path) -> Store:
    return open_store(StoreSpec("counts", kind), state_dir, "app", 3)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_reopen_keeps_data_and_checkpoint_only_when_persistent(kind: str, tmp_path: Path) -> None:
    store = open_counts(kind, tmp_path)
    assert store.checkpoint is None and len(store) == 0
    for i in range(100):
        store.put(f"k{i}", {"i": i})
    store.delete("k0")
    store.commit(101)
    store.restore_batch([(b'"k1"', None), (b'"r"', b"1")], 120)
    store.close()

    reopened = open_counts(kind, tmp_path)
    if kind == "memory":
        assert reopened.checkpoint is None and len(reopened) == 0  # a fresh process restores all
    else:
        assert reopened.checkpoint == 120
        assert len(reopened) == 99
        assert reopened.get("k2") == {"i": 2} and reopened.get("r") == 1
        assert "k0" not in reopened and "k1" not in reopened
    reopened.close()


@pytest.mark.parametrize("kind", PERSISTENT)
def test_files_live_under_the_task_directory(kind: str, tmp_path: Path) -> None:
    store = open_counts(kind, tmp_path)
    store.put("a", 1)
    store.commit(1)
    store.close()
    task_dir = tmp_path / "app" / "stores" / "counts" / "3"
    assert task_dir == store_dir(tmp_path, "app", "counts", 3)
    assert any(task_dir.iterdir())
    store.destroy()
    assert open_counts(kind, tmp_path).checkpoint is None


_CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    from eokafka.state import StoreSpec, open_store
    kind, state_dir = sys.argv[1], sys.argv[2]
    store = open_store(StoreSpec("counts", kind), state_dir, "app", 3)
    store.put("a", 1)
    store.put("b", 2)
    store.commit(5)
    store.put("a", 100)          # the next transaction: in the overlay only
    store.delete("b")
    store.put("c", 3)
    if sys.argv[3] == "after-commit":
        store.commit(9)
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no flush, no atexit
    """
)


@pytest.mark.parametrize("kind", PERSISTENT)
@pytest.mark.parametrize("moment", ["before-commit", "after-commit"])
def test_sigkill_leaves_committed_state_and_its_checkpoint(
    kind: str, moment: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CRASHER, kind, str(tmp_path), moment],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    store = open_counts(kind, tmp_path)
    if moment == "before-commit":
        assert store.checkpoint == 5
        assert dict(store.items()) == {"a": 1, "b": 2}
    else:
        assert store.checkpoint == 9
        assert dict(store.items()) == {"a": 100, "c": 3}
    store.close()


@pytest.mark.parametrize("backend_cls", [SqliteBackend, RocksBackend])
def test_a_failing_apply_changes_nothing(backend_cls: type, tmp_path: Path) -> None:
    backend = backend_cls(tmp_path / "db")
    backend.apply({b"a": b"1"}, 1)
    bad = {b"a": b"2", b"b": b"2", ("not", "bytes"): b"3"}
    with pytest.raises((StoreError, TypeError)):
        backend.apply(bad, 2)
    assert dict(backend.items()) == {b"a": b"1"} and backend.checkpoint() == 1
    backend.close()
    reopened = backend_cls(tmp_path / "db")
    assert dict(reopened.items()) == {b"a": b"1"} and reopened.checkpoint() == 1
    reopened.close()


def _garble(path: Path) -> None:
    path.write_bytes(b"\x13\x37 this is not a store " * 64)


@pytest.mark.parametrize("kind", PERSISTENT)
def test_corrupt_files_raise_an_error_naming_the_path(kind: str, tmp_path: Path) -> None:
    store = open_counts(kind, tmp_path)
    store.put("a", 1)
    store.commit(1)
    store.close()
    task_dir = store_dir(tmp_path, "app", "counts", 3)
    if kind == "sqlite":
        victim = task_dir / "store.sqlite3"
        _garble(victim)
    else:
        victim = task_dir / "rocksdb"
        _garble(victim / "CURRENT")
    with pytest.raises(StoreCorruptError) as caught:
        open_counts(kind, tmp_path)
    assert str(victim) in str(caught.value)
    assert caught.value.path == victim

    # What the runtime does next: wipe and restore in full.
    wipe_store(tmp_path, "app", "counts", 3)
    assert not task_dir.exists()
    fresh = open_counts(kind, tmp_path)
    assert fresh.checkpoint is None and len(fresh) == 0
    fresh.close()


@pytest.mark.parametrize("kind", PERSISTENT)
def test_damaged_data_pages_surface_on_scan(kind: str, tmp_path: Path) -> None:
    """Open only reads metadata; a bad data block must still fail loudly, not look smaller."""
    backend = (SqliteBackend if kind == "sqlite" else RocksBackend)(tmp_path / "db")
    for batch in range(5):
        backend.apply(
            {b"k%06d" % i: b"v" * 100 for i in range(batch * 20_000, (batch + 1) * 20_000)}, batch
        )
    backend.close()
    files = [tmp_path / "db"] if kind == "sqlite" else list((tmp_path / "db").glob("*.sst"))
    victim = max(files, key=lambda f: f.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 8192] = b"\xaa" * 8192
    victim.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match=str(tmp_path / "db")):
        reopened = (SqliteBackend if kind == "sqlite" else RocksBackend)(tmp_path / "db")
        try:
            len(reopened)
            list(reopened.items())
        finally:
            reopened.close()


def test_rocks_close_releases_the_lock_despite_open_scans(tmp_path: Path) -> None:
    backend = RocksBackend(tmp_path / "db")
    backend.apply({b"a": b"1", b"b": b"2"}, 1)
    scan = backend.items()
    assert next(scan) == (b"a", b"1")  # a processor abandoned this loop half-way
    backend.close()
    RocksBackend(tmp_path / "db").close()


def test_rocks_missing_manifest_is_corruption(tmp_path: Path) -> None:
    backend = RocksBackend(tmp_path / "db")
    backend.apply({b"a": b"1"}, 1)
    backend.close()
    for manifest in (tmp_path / "db").glob("MANIFEST-*"):
        manifest.unlink()
    with pytest.raises(StoreCorruptError, match=str(tmp_path / "db")):
        RocksBackend(tmp_path / "db")


def test_sqlite_bad_checkpoint_is_corruption(tmp_path: Path) -> None:
    import sqlite3

    backend = SqliteBackend(tmp_path / "s.db")
    backend.apply({b"a": b"1"}, 1)
    backend.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE meta SET value = 'x' WHERE name = 'checkpoint'")
    conn.close()
    with pytest.raises(StoreCorruptError, match="invalid checkpoint"):
        SqliteBackend(tmp_path / "s.db")


def test_rocks_second_open_is_locked_not_corrupt(tmp_path: Path) -> None:
    first = RocksBackend(tmp_path / "db")
    with pytest.raises(StoreLockedError, match=str(tmp_path / "db")):
        RocksBackend(tmp_path / "db")
    first.close()
    RocksBackend(tmp_path / "db").close()  # closing released the lock


@pytest.mark.parametrize("backend_cls", [SqliteBackend, RocksBackend])
def test_closed_backend_raises_store_error(backend_cls: type, tmp_path: Path) -> None:
    backend = backend_cls(tmp_path / "db")
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        backend.get(b"a")


def test_in_memory_backend_basics() -> None:
    backend = InMemoryBackend()
    backend.apply({b"a": b"1", b"b": None}, None)
    assert backend.checkpoint() is None and dict(backend.items()) == {b"a": b"1"}
    backend.apply({b"a": None}, 4)
    assert len(backend) == 0 and backend.checkpoint() == 4
    backend.destroy()
    assert backend.checkpoint() is None


# -------------------------------------------------------------------- spec and names


def test_changelog_topic_name() -> None:
    assert changelog_topic("orders-app", "counts") == "orders-app-counts-changelog"
    with pytest.raises(ValueError, match="store name"):
        changelog_topic("app", "bad/name")
    with pytest.raises(ValueError, match="longer than"):
        changelog_topic("a" * 200, "b" * 60)


def test_store_spec_defaults_and_validation() -> None:
    spec = StoreSpec("counts")
    assert spec.backend == "memory"
    assert isinstance(spec.key_serde, serdes.Json) and isinstance(spec.value_serde, serdes.Json)
    for name in ("", "..", "a b", "x/y"):
        with pytest.raises(ValueError, match="store name"):
            StoreSpec(name)
    with pytest.raises(ValueError, match="backend must be one of"):
        StoreSpec("counts", "lmdb")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="partition"):
        store_dir("/tmp", "app", "counts", -1)
