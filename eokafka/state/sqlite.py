"""A persistent backend on the stdlib's sqlite3: no extra dependency, one file per task.

Durability: WAL journal with ``synchronous=NORMAL``. A power loss may roll back the last few
commits, but every transaction stays atomic, so the store comes back at or behind Kafka with
a checkpoint that matches its data (invariant 5); the changelog replays the rest. Full
fsync per commit would buy nothing the changelog does not already give.

Speed: every row written costs a few microseconds in the sqlite3 binding and as much again
in the B-tree upsert, and a batch of random keys dirties most leaf pages, so restores run at
roughly 100,000 rows/s (benchmarks/store_backends.py). ``Store.restore_batch(flush=False)``
merges batches first so repeated keys are written once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

from eokafka.state.backend import StoreCorruptError, StoreError, StoreLockedError

__all__ = ["SqliteBackend"]

_FORMAT: Final = 1  # bump when the schema changes; an unknown format is treated as corrupt
_SQLITE_CORRUPT: Final = 11
_SQLITE_NOTADB: Final = 26
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID",
)
_PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",  # readers never block, one fsync-free append per commit
    "PRAGMA synchronous=NORMAL",  # atomic but not durable on power loss: see module doc
    "PRAGMA cache_size=-32768",  # 32 MiB of page cache, grown only as it is used
    # Default 4 KiB pages: 16 KiB pages restored ~10% faster but made commits of scattered
    # keys ~30% slower (each dirty page is written whole to the WAL).
    # Checkpoint every ~16 MiB of WAL, not 4: a batch of scattered keys rewrites most pages,
    # so the default would checkpoint (and fsync) several times per restore batch.
    "PRAGMA wal_autocheckpoint=4000",
)
_GET: Final = "SELECT v FROM kv WHERE k = ?"
_PUT: Final = "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
_DELETE: Final = "DELETE FROM kv WHERE k = ?"
_SET_META: Final = (
    "INSERT INTO meta (name, value) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)


def _classify(path: Path, action: str, exc: sqlite3.Error) -> StoreError:
    """Map sqlite's error code to what the runtime should do: wipe, wait, or fail."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # primary code, without extended bits
    message = f"sqlite store {path}: {action} failed: {exc}"
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return StoreCorruptError(path, message)
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return StoreLockedError(path, message)
    return StoreError(path, message)


class SqliteBackend:
    """One sqlite file: ``kv`` holds the state, ``meta`` the checkpoint and format version.

    Not thread-safe; the runtime uses one backend from one thread at a time, though that
    thread may change (a restore thread, then the worker), hence ``check_same_thread=False``.
    """

    __slots__ = ("path", "_conn", "_checkpoint")

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(self.path, f"sqlite store {self.path}: cannot create: {exc}") from exc
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, cached_statements=16
            )
        except sqlite3.Error as exc:
            raise _classify(self.path, "open", exc) from exc
        self._conn = conn
        try:
            for pragma in _PRAGMAS:
                conn.execute(pragma)
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            if "format" not in meta:
                conn.execute(_SET_META, ("format", _FORMAT))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.close()
            raise _classify(self.path, "open", exc) from exc
        if meta.get("format", _FORMAT) != _FORMAT:
            self.close()
            raise StoreCorruptError(
                self.path,
                f"sqlite store {self.path}: unknown format {meta['format']!r} "
                f"(this version writes {_FORMAT})",
            )
        checkpoint = meta.get("checkpoint")
        if checkpoint is not None and (type(checkpoint) is not int or checkpoint < 0):
            self.close()
            raise StoreCorruptError(
                self.path, f"sqlite store {self.path}: invalid checkpoint {checkpoint!r}"
            )
        self._checkpoint: int | None = checkpoint

    def _db(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise StoreError(self.path, f"sqlite store {self.path} is closed")
        return conn

    def get(self, key: bytes) -> bytes | None:
        try:
            row = self._db().execute(_GET, (key,)).fetchone()
        except sqlite3.Error as exc:
            raise _classify(self.path, "get", exc) from exc
        return None if row is None else row[0]

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        try:
            # The cursor streams rows; sqlite reads pages as the caller advances.
            yield from self._db().execute("SELECT k, v FROM kv")
        except sqlite3.Error as exc:
            raise _classify(self.path, "scan", exc) from exc

    def __len__(self) -> int:
        try:
            return int(self._db().execute("SELECT count(*) FROM kv").fetchone()[0])
        except sqlite3.Error as exc:
            raise _classify(self.path, "count", exc) from exc

    def apply(self, writes: Mapping[bytes, bytes | None], checkpoint: int | None) -> None:
        if not writes and (checkpoint is None or checkpoint == self._checkpoint):
            return
        conn = self._db()
        puts = [(key, value) for key, value in writes.items() if value is not None]
        deletes: list[tuple[bytes]] = []
        if len(puts) != len(writes):
            deletes = [(key,) for key, value in writes.items() if value is None]
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if puts:
                    conn.executemany(_PUT, puts)
                if deletes:
                    conn.executemany(_DELETE, deletes)
                if checkpoint is not None:
                    conn.execute(_SET_META, ("checkpoint", checkpoint))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _classify(self.path, "apply", exc) from exc
        if checkpoint is not None:
            self._checkpoint = checkpoint

    def checkpoint(self) -> int | None:
        return self._checkpoint

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def destroy(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"SqliteBackend({str(self.path)!r}, checkpoint={self._checkpoint})"
