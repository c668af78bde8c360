"""The store a processor sees: committed state in a backend plus the open transaction's overlay.

Writes go only to the overlay, as serialized bytes, so a read sees its own writes, an abort is
dropping a dict (invariant 4: no wipe and restore), and the overlay doubles as the
deduplicated changelog batch for the transaction. The backend changes only in :meth:`commit`
(after Kafka committed) and :meth:`restore_batch`, each one atomic local write together with
the changelog checkpoint (invariant 5).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Final

from eokafka.serdes import Json, Serde, String, is_identity
from eokafka.state.backend import Backend
from eokafka.state.cache import DICT_ENTRY_BYTES, pair_bytes

__all__ = ["Store", "StoreRecordTooLargeError"]

_MISSING: Final[Any] = object()
# Keys whose bytes may be remembered: immutable, and no two of these types compare equal
# (bool and float do: 1 == 1.0 == True), with a deterministic serde.
_IMMUTABLE_KEYS: Final = frozenset({str, bytes, int})
# Decoded values that may be handed out again for the same bytes: immutable.
_IMMUTABLE_VALUES: Final = frozenset({int, str, float, bool})
_DETERMINISTIC_SERDES: Final = frozenset({Json, String})
# Bounds of the memos of a store's serdes: entries (past it a memo starts over) and the
# longest encoding remembered; a full memo holds well under a megabyte.
_MEMO_ENTRIES: Final = 4096
_MEMO_BYTES: Final = 64
DEFAULT_RESTORE_BUFFER_BYTES: Final = 64 * 1024 * 1024


class StoreRecordTooLargeError(ValueError):
    """A write whose changelog record could never be sent: refused when it is written.

    Not an EokafkaError: like any exception a processor raises, it makes the record that
    wrote it a poison record, handled by ``on_error``."""

    def __init__(self, store: str, key: Any, size: int, limit: int) -> None:
        shown = repr(key)
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        super().__init__(
            f"store {store!r}, key {shown}: key and value take {size} bytes, more than the "
            f"{limit} bytes a changelog record can carry (the producer's message.max.bytes or "
            "the changelog topic's max.message.bytes); store a smaller value"
        )
        self.store = store
        self.key = key


class Store:
    """One named store of one task (input partition).

    Processors use the mapping-like API (``get``/``put``/``delete``/``in``/``items``/``len``);
    the runtime drives the transaction side (``pending_changelog``/``commit``/``abort``) and
    recovery (``restore_batch``/``checkpoint``). Not thread-safe: one task, one thread.

    ``put(key, None)`` is a delete, as in Kafka, where a null value is a tombstone.
    """

    __slots__ = (
        "name",
        "backend",
        "key_serde",
        "value_serde",
        "restore_buffer_bytes",
        "max_record_bytes",
        "_overlay",
        "_restore_buffer",
        "_restore_offset",
        "_key_identity",
        "_memo_keys",
        "_key_memo",
        "_value_identity",
        "_memo_values",
        "_encoded",
        "_decoded",
        "_serialize_key",
        "_serialize_value",
        "_deserialize_key",
        "_deserialize_value",
        "_committed",
    )

    def __init__(
        self,
        name: str,
        backend: Backend,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
        *,
        restore_buffer_bytes: int = DEFAULT_RESTORE_BUFFER_BYTES,
    ) -> None:
        self.name = name
        self.restore_buffer_bytes = restore_buffer_bytes
        # Key + value bytes one changelog record can carry; the runtime sets the real limit.
        self.max_record_bytes = sys.maxsize
        self.backend = backend
        self.key_serde: Serde = Json() if key_serde is None else key_serde
        self.value_serde: Serde = Json() if value_serde is None else value_serde
        # serialized key -> serialized value, or None for a delete; insertion-ordered.
        self._overlay: dict[bytes, bytes | None] = {}
        # Changelog records merged by restore_batch(flush=False), not yet in the backend.
        self._restore_buffer: dict[bytes, bytes | None] = {}
        self._restore_offset = 0
        # Bound methods looked up once: these run for every get/put on the hot path.
        self._key_identity = is_identity(self.key_serde)
        # Bounded memos of a deterministic serde's results, for the types in _memo_keys and
        # _memo_values (none for other serdes): key -> bytes, so a get and the put after it
        # (every aggregation's read-modify-write) and the next record of the key serialize
        # it once; value -> bytes and bytes -> immutable value, so a count or a sum is not
        # written and parsed by a Python call for every record. Pure functions of their
        # input: commits, aborts and restores leave them right.
        keys_memo = type(self.key_serde) in _DETERMINISTIC_SERDES
        self._memo_keys = _IMMUTABLE_KEYS if keys_memo else frozenset()
        self._key_memo: dict[Any, bytes] = {}
        self._value_identity = is_identity(self.value_serde)
        values_memo = type(self.value_serde) in _DETERMINISTIC_SERDES
        self._memo_values = _IMMUTABLE_KEYS if values_memo else frozenset()
        self._encoded: dict[Any, bytes] = {}
        self._decoded: dict[bytes, Any] | None = {} if values_memo else None
        # Kept bytes must not carry a serializer's spare buffer (Json.serialize_kept).
        self._serialize_key = getattr(self.key_serde, "serialize_kept", self.key_serde.serialize)
        self._serialize_value = getattr(
            self.value_serde, "serialize_kept", self.value_serde.serialize
        )
        self._deserialize_key = self.key_serde.deserialize
        self._deserialize_value = self.value_serde.deserialize
        # The backend's read for the per-record path, where it offers one: a C call when the
        # committed state is a dict in memory, or a read cache in front of RocksDB.
        committed = getattr(backend, "committed_get", None)
        self._committed: Callable[[bytes], bytes | None] = (
            backend.get if committed is None else committed
        )

    # ------------------------------------------------------------------ processor side

    def _key(self, key: Any) -> bytes:
        """A key's bytes (a remembered key is looked up by the callers on the hot path)."""
        if self._key_identity and type(key) is bytes:
            return key
        data = self._serialize_key(key)
        if data is None:
            raise ValueError(f"store {self.name!r}: keys cannot be None")
        if type(key) in self._memo_keys:
            _remember(self._key_memo, key, data, len(data))
        return data

    def get(self, key: Any, default: Any = None) -> Any:
        """The value as of this transaction's own writes, else the committed one."""
        data = self._key_memo.get(key) if type(key) in self._memo_keys else None
        if data is None:
            data = self._key(key)
        value = self._overlay.get(data, _MISSING)
        if value is _MISSING:
            value = self._committed(data)
        if value is None:
            return default
        if self._value_identity:
            return value
        memo = self._decoded
        if memo is None:
            return self._deserialize_value(value)
        out = memo.get(value, _MISSING)
        if out is _MISSING:
            out = self._deserialize_value(value)
            if type(out) in _IMMUTABLE_VALUES:
                _remember(memo, value, out, len(value))
            elif not memo:
                self._decoded = None  # its values are not immutable: no lookups for them
        return out

    def put(self, key: Any, value: Any) -> None:
        """Write inside the open transaction; ``None`` deletes."""
        data = self._key_memo.get(key) if type(key) in self._memo_keys else None
        if data is None:
            data = self._key(key)
        if type(value) in self._memo_values:
            raw = self._encoded.get(value)
            if raw is None:
                raw = self._serialize_value(value)
                if raw is not None:
                    _remember(self._encoded, value, raw, len(raw))
            value = raw
        elif not (self._value_identity and type(value) is bytes):
            value = self._serialize_value(value)
        if len(data) + len(value or b"") > self.max_record_bytes:
            size = len(data) + len(value)
            raise StoreRecordTooLargeError(self.name, key, size, self.max_record_bytes)
        self._overlay[data] = value

    def delete(self, key: Any) -> None:
        """Delete inside the open transaction; absent keys still log a (harmless) tombstone."""
        self._overlay[self._key(key)] = None

    def __contains__(self, key: Any) -> bool:
        data = self._key(key)
        value = self._overlay.get(data, _MISSING)
        if value is _MISSING:
            return self._committed(data) is not None
        return value is not None

    def items(self) -> Iterator[tuple[Any, Any]]:
        """(key, value) pairs of committed state with this transaction's writes on top.

        Committed pairs come in the backend's order, then keys first written in this
        transaction. Writes made while iterating may or may not be seen; the runtime never
        commits in the middle of a processor, so the backend stays still meanwhile.
        """
        overlay = dict(self._overlay)  # a snapshot, so puts during the loop cannot break it
        key_out = self._deserialize_key
        value_out = self._deserialize_value
        key_identity = self._key_identity
        value_identity = self._value_identity
        for key, value in self.backend.items():
            if overlay:
                pending = overlay.pop(key, _MISSING)
                if pending is not _MISSING:
                    if pending is None:
                        continue
                    value = pending
            yield (
                key if key_identity else key_out(key),
                value if value_identity else value_out(value),
            )
        for key, written in overlay.items():  # keys first written in this transaction
            if written is not None:
                yield (
                    key if key_identity else key_out(key),
                    written if value_identity else value_out(written),
                )

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        """Same as :meth:`items`: a store is iterated for its pairs, not just its keys."""
        return self.items()

    def __len__(self) -> int:
        """Committed keys adjusted by this transaction's writes; O(n) on persistent backends."""
        count = len(self.backend)
        get = self.backend.get
        for key, value in self._overlay.items():
            committed = get(key) is not None
            if value is None:
                count -= committed
            else:
                count += not committed
        return count

    # -------------------------------------------------------------------- runtime side

    def pending_changelog(self) -> Mapping[bytes, bytes | None]:
        """This transaction's last write per key, in first-write order: the changelog batch.

        A read-only view, valid until the next commit or abort; None values are tombstones.
        """
        self._check_not_restoring()
        return MappingProxyType(self._overlay)

    def commit(self, checkpoint: int | None) -> None:
        """Apply the overlay and ``checkpoint`` in one backend write, after Kafka committed.

        ``checkpoint`` is the changelog offset after this transaction's last changelog record
        (None keeps the stored one). If the backend fails the overlay is kept, so reads stay
        right; the runtime should then close the store and restore it from the changelog.
        """
        _check_offset(checkpoint)
        self._check_not_restoring()
        if self._overlay or checkpoint is not None:
            self.backend.apply(self._overlay, checkpoint)
        self._overlay = {}

    def abort(self) -> None:
        """Forget the open transaction's writes; the backend is never touched (invariant 4)."""
        self._overlay = {}
        self._derived_reset()

    def _derived_reset(self) -> None:
        """A subclass drops what it derives from the entries (caches, indexes): called after
        an abort, a restore batch, a close and a destroy, when the entries may have moved."""

    def restore_batch(
        self,
        records: Iterable[tuple[bytes, bytes | None]],
        next_offset: int,
        *,
        flush: bool = True,
    ) -> None:
        """Apply changelog records in offset order and checkpoint ``next_offset``, atomically.

        The last write per key wins and None is a tombstone, as in the compacted topic. With
        ``flush=True`` (the default) this is one backend write. With ``flush=False`` batches
        are merged in memory first (up to ``restore_buffer_bytes``, estimated) and written
        together with the last batch's offset: an uncompacted changelog tail rewrites the
        same keys many times, and a backend pays per row written, not per record read.
        The last batch of a restore must pass ``flush=True``; until it does, reads see the
        state as of the last flush. A crash before the flush leaves the store behind, never
        ahead (invariant 5).
        """
        if self._overlay:
            raise RuntimeError(
                f"store {self.name!r}: restore_batch with {len(self._overlay)} uncommitted "
                "writes; restore must finish before processing starts"
            )
        _check_offset(next_offset)
        current = self._restore_offset if self._restore_buffer else self.backend.checkpoint()
        if current is not None and next_offset < current:
            raise ValueError(
                f"store {self.name!r}: restore to offset {next_offset} would move the "
                f"checkpoint back from {current}; the changelog was probably recreated, "
                "so wipe the store and restore it in full"
            )
        self._derived_reset()
        batch = dict(records)  # last write per key, in C
        buffer = self._restore_buffer
        if not buffer and flush:
            self.backend.apply(batch, next_offset)
            return
        if buffer:
            buffer.update(batch)
        else:
            self._restore_buffer = buffer = batch
        self._restore_offset = next_offset
        if batch:
            # Average record size of this batch times distinct keys buffered: per-batch C
            # work only, where exact per-record accounting would cost a Python loop.
            estimate = len(buffer) * (pair_bytes(batch) / len(batch) + DICT_ENTRY_BYTES)
        else:
            estimate = 0.0
        if flush or estimate >= self.restore_buffer_bytes:
            self.backend.apply(buffer, next_offset)
            self._restore_buffer = {}

    @property
    def restoring(self) -> bool:
        """True while ``restore_batch(flush=False)`` left merged records unwritten."""
        return bool(self._restore_buffer)

    def _check_not_restoring(self) -> None:
        if self._restore_buffer:
            raise RuntimeError(
                f"store {self.name!r}: {len(self._restore_buffer)} restored keys are not "
                "written yet; end the restore with restore_batch(..., flush=True)"
            )

    @property
    def checkpoint(self) -> int | None:
        """Where the changelog restore starts; None means from the beginning."""
        return self.backend.checkpoint()

    def close(self) -> None:
        """Drop uncommitted writes (and unflushed restore records) and release the backend."""
        self._overlay = {}
        self._restore_buffer = {}
        self.backend.close()
        self._derived_reset()

    def destroy(self) -> None:
        """Drop everything local, for a wipe-and-restore after corruption."""
        self._overlay = {}
        self._restore_buffer = {}
        self.backend.destroy()
        self._derived_reset()

    def __repr__(self) -> str:
        return (
            f"Store({self.name!r}, {self.backend!r}, key_serde={self.key_serde!r}, "
            f"value_serde={self.value_serde!r}, pending={len(self._overlay)})"
        )


def _remember(memo: dict[Any, Any], key: Any, entry: Any, size: int) -> None:
    """Note ``memo[key] = entry`` if its encoding (``size`` bytes) is short; a full memo
    starts over."""
    if size <= _MEMO_BYTES:
        if len(memo) >= _MEMO_ENTRIES:
            memo.clear()
        memo[key] = entry


def _check_offset(offset: int | None) -> None:
    if offset is not None and (type(offset) is not int or offset < 0):
        raise ValueError(f"a changelog offset must be a non-negative int, got {offset!r}")
