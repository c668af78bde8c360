"""A persistent backend on RocksDB (through rocksdict), for stores larger than memory.

User keys live in the default column family and the checkpoint in a separate ``meta``
column family, so no user key can collide with it and no user key pays for a prefix. One
WriteBatch spans both families; with the WAL on, RocksDB replays a batch whole or not at
all, so data and checkpoint stay together (invariant 5). ``sync`` is off: like sqlite's
``synchronous=NORMAL`` a power loss may drop the last commits, never half of one.

The WAL stays on for restore batches too. Turning it off bought nothing measurable (the cost
is the memtable insert, and with ``sync`` off the WAL is a buffered append), and mixing WAL
and WAL-less writes is unsafe: after a crash RocksDB would replay a later logged commit
(with its higher checkpoint) while an earlier unlogged restore batch was lost, leaving the
checkpoint ahead of the data.
"""

from __future__ import annotations

import shutil
import struct
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from eokafka.state.backend import StoreCorruptError, StoreError, StoreLockedError
from eokafka.state.cache import CommittedReads

__all__ = ["RocksBackend"]

_META_CF: Final = "eokafka-meta"
_CHECKPOINT_KEY: Final = b"checkpoint"
_FORMAT_KEY: Final = b"format"
_FORMAT: Final = b"1"
_OFFSET: Final = struct.Struct(">q")
# Status texts of a store that can't be read; wiping and restoring fixes all of them.
_CORRUPT_HINTS: Final = ("corruption", "no such file", "invalid argument", "notfound", "json")
# Another handle holds the LOCK file ("block" in "block checksum mismatch" must not match).
_LOCK_HINTS: Final = ("/lock:", "lock file", "lock hold")


def _import_rocksdict() -> Any:
    try:
        import rocksdict
    except ImportError as exc:  # optional: only stores declared with backend="rocksdb" need it
        raise ImportError(
            "the rocksdb store backend needs the rocksdict package: pip install rocksdict"
        ) from exc
    return rocksdict


def _classify(path: Path, action: str, exc: BaseException) -> StoreError:
    """rocksdict raises bare Exceptions; RocksDB's status text tells the kinds apart."""
    text = str(exc)
    message = f"rocksdb store {path}: {action} failed: {text or type(exc).__name__}"
    lowered = text.lower()
    if "corruption" not in lowered and any(hint in lowered for hint in _LOCK_HINTS):
        return StoreLockedError(path, message)
    if any(hint in lowered for hint in _CORRUPT_HINTS):
        return StoreCorruptError(path, message)
    return StoreError(path, message)


def _options(rocksdict: Any) -> Any:
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    # Restore speed is memtable-insert bound (random keys into a skiplist), not WAL bound:
    # an 8 MiB memtable stays cache-friendly and restored about 1.6x faster than the 64 MiB
    # default in benchmarks/store_backends.py. It also caps memory per task and store.
    options.set_write_buffer_size(8 * 1024 * 1024)
    options.set_keep_log_file_num(2)  # RocksDB's info LOG files, not the WAL
    # The meta family gets a few bytes per commit, so on its own its memtable would never
    # flush and would pin every WAL file (RocksDB keeps a WAL until all families flushed
    # past it): hundreds of MB of WAL and a slow replay on open. Atomic flush flushes it with
    # the data; the WAL cap bounds what remains.
    options.set_atomic_flush(True)
    options.set_max_total_wal_size(64 * 1024 * 1024)
    return options


class RocksBackend:
    """One RocksDB directory per task and store. Not thread-safe, like every backend."""

    __slots__ = (
        "path",
        "_db",
        "_meta",
        "_write_options",
        "_rocksdict",
        "_checkpoint",
        "_scans",
        "_reads",
    )

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        rocksdict = _import_rocksdict()
        self._rocksdict = rocksdict
        self._db: Any = None
        self._meta: Any = None
        # Committed values recently read or written; apply() and close() keep it right.
        self._reads = CommittedReads(self.get)
        # Open items() generators: each holds a RocksDB iterator, which keeps the DB (and its
        # LOCK) alive after close(), so close() closes them first.
        self._scans: weakref.WeakSet[Generator[tuple[bytes, bytes], None, None]]
        self._scans = weakref.WeakSet()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(self.path, f"rocksdb store {self.path}: cannot create: {exc}") from exc
        try:
            self._db = rocksdict.Rdict(
                str(self.path),
                _options(rocksdict),
                column_families={_META_CF: rocksdict.Options(raw_mode=True)},
            )
            meta = self._db.get_column_family(_META_CF)
            self._meta = self._db.get_column_family_handle(_META_CF)
            stored_format = meta.get(_FORMAT_KEY)
            raw_checkpoint = meta.get(_CHECKPOINT_KEY)
            meta.close()
            del meta
            write_options = rocksdict.WriteOptions()
            write_options.sync = False
            self._write_options = write_options
            if stored_format is None:
                batch = rocksdict.WriteBatch(raw_mode=True)
                batch.put(_FORMAT_KEY, _FORMAT, self._meta)
                self._db.write(batch, write_options)
        except Exception as exc:
            self.close()
            raise _classify(self.path, "open", exc) from exc
        if stored_format not in (None, _FORMAT):
            self.close()
            raise StoreCorruptError(
                self.path, f"rocksdb store {self.path}: unknown format {stored_format!r}"
            )
        self._checkpoint: int | None = None
        if raw_checkpoint is not None:
            if len(raw_checkpoint) != _OFFSET.size or _OFFSET.unpack(raw_checkpoint)[0] < 0:
                self.close()
                raise StoreCorruptError(
                    self.path, f"rocksdb store {self.path}: invalid checkpoint {raw_checkpoint!r}"
                )
            self._checkpoint = _OFFSET.unpack(raw_checkpoint)[0]

    def _open_db(self) -> Any:
        db = self._db
        if db is None:
            raise StoreError(self.path, f"rocksdb store {self.path} is closed")
        return db

    def get(self, key: bytes) -> bytes | None:
        try:
            return self._open_db().get(key)
        except StoreError:
            raise
        except Exception as exc:
            raise _classify(self.path, "get", exc) from exc

    @property
    def committed_get(self) -> Callable[[bytes], bytes | None]:
        """``get`` through the read cache, for the per-record path: a hit is one C call. It
        stays valid for the backend's life (the cache is cleared in place, never replaced)."""
        return self._reads.__getitem__

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        scan = self._scan(values=True)
        self._scans.add(scan)
        return scan

    def __len__(self) -> int:
        """Exact, by a key scan: RocksDB's estimate-num-keys can be far off (even 0)."""
        return sum(1 for _ in self._scan(values=False))

    def _scan(self, values: bool) -> Generator[tuple[bytes, bytes], None, None]:
        """Walk the default family and check the iterator's status at the end.

        rocksdict's own items() stops quietly at a corrupt block, which would make a damaged
        store look merely smaller; the raw iterator's status() reports it.
        """
        try:
            iterator = self._open_db().iter()
            iterator.seek_to_first()
            valid, advance, key, value = iterator.valid, iterator.next, iterator.key, iterator.value
            while valid():
                yield (key(), value() if values else b"")
                advance()
            iterator.status()
        except StoreError:
            raise
        except Exception as exc:
            raise _classify(self.path, "scan", exc) from exc

    def apply(self, writes: Mapping[bytes, bytes | None], checkpoint: int | None) -> None:
        if not writes and (checkpoint is None or checkpoint == self._checkpoint):
            return
        db = self._open_db()
        batch = self._rocksdict.WriteBatch(raw_mode=True)
        put = batch.put
        delete = batch.delete
        try:
            for key, value in writes.items():
                if value is None:
                    delete(key)
                else:
                    put(key, value)
            if checkpoint is not None:
                put(_CHECKPOINT_KEY, _OFFSET.pack(checkpoint), self._meta)
            db.write(batch, self._write_options)
        except Exception as exc:
            self._reads.forget()
            raise _classify(self.path, "apply", exc) from exc
        self._reads.wrote(writes)
        if checkpoint is not None:
            self._checkpoint = checkpoint

    def checkpoint(self) -> int | None:
        return self._checkpoint

    def close(self) -> None:
        """Flush and close. Drops the column family handle too: it alone keeps RocksDB open."""
        self._reads.forget()
        for scan in list(self._scans):
            scan.close()
        db, self._db = self._db, None
        self._meta = None
        if db is None:
            return
        try:
            # Rdict.close() flushes the default family only; without this the meta family's
            # memtable would keep the WAL alive and be replayed on every open.
            meta = db.get_column_family(_META_CF)
            meta.flush()
            meta.close()
        finally:
            db.close()

    def destroy(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def __repr__(self) -> str:
        return f"RocksBackend({str(self.path)!r}, checkpoint={self._checkpoint})"
