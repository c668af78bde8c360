"""The byte-level contract every store backend keeps, and the in-memory backend.

A backend holds one task's committed state. It never sees uncommitted writes: the
:class:`~eokafka.state.store.Store` keeps those in an overlay and hands the backend a whole
commit at once. That is what makes invariant 5 hold: :meth:`Backend.apply` writes the data
and the changelog checkpoint it reflects in one atomic local write, so after any crash the
backend is at or behind what Kafka committed and the changelog tail brings it forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from eokafka.errors import EokafkaError

__all__ = [
    "Backend",
    "InMemoryBackend",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
]


class StoreError(EokafkaError):
    """A local state store failed; ``path`` names its files (None for in-memory stores)."""

    path: Path | None

    def __init__(self, path: Path | str | None, message: str) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the two-argument __init__ picklable, like SerdeError.
        return (type(self), (self.path, self.args[0]), self.__dict__)


class StoreCorruptError(StoreError):
    """The local files are unreadable. Safe to wipe: the changelog can rebuild them in full."""


class StoreLockedError(StoreError):
    """Another process (or an unclosed handle in this one) holds the store open.

    Distinct from corruption on purpose: wiping a store that a zombie still writes to would
    race it, so the runtime should retry or fail instead.
    """


@runtime_checkable
class Backend(Protocol):
    """Committed key/value bytes of one store for one task, plus its changelog checkpoint."""

    def get(self, key: bytes) -> bytes | None:
        """The committed value, or None if the key is absent."""
        ...

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every committed pair; order is backend-defined. Do not apply() while iterating."""
        ...

    def __len__(self) -> int:
        """The number of committed keys (O(n) for persistent backends)."""
        ...

    def apply(self, writes: Mapping[bytes, bytes | None], checkpoint: int | None) -> None:
        """Apply puts (None deletes) and record ``checkpoint`` in ONE atomic local write.

        ``checkpoint`` is the next changelog offset to restore from; None keeps the stored
        one (state then sits ahead of its checkpoint, which a replay only re-applies).
        """
        ...

    def checkpoint(self) -> int | None:
        """The changelog offset to restore from, or None to restore from the beginning."""
        ...

    def close(self) -> None:
        """Release files and handles; idempotent."""
        ...

    def destroy(self) -> None:
        """Close and delete the local files, for a wipe-and-restore."""
        ...


class InMemoryBackend:
    """A dict. Nothing survives the process, so the checkpoint starts None: full restore."""

    __slots__ = ("_data", "_checkpoint")

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._checkpoint: int | None = None

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    @property
    def committed_get(self) -> Callable[[bytes], bytes | None]:
        """``get`` as the dict's own bound method, for callers on the per-record path; it
        stays valid for the backend's life (``apply`` and ``destroy`` keep the same dict)."""
        return self._data.get

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._data.items())

    def __len__(self) -> int:
        return len(self._data)

    def apply(self, writes: Mapping[bytes, bytes | None], checkpoint: int | None) -> None:
        data = self._data
        # update() runs in C; the usually few tombstones are then removed one by one.
        deletes = [key for key, value in writes.items() if value is None]
        data.update(writes)  # type: ignore[arg-type]  # the Nones are removed right below
        for key in deletes:
            del data[key]
        if checkpoint is not None:
            self._checkpoint = checkpoint

    def checkpoint(self) -> int | None:
        return self._checkpoint

    def close(self) -> None:
        pass

    def destroy(self) -> None:
        self._data.clear()
        self._checkpoint = None

    def __repr__(self) -> str:
        return f"InMemoryBackend(keys={len(self._data)}, checkpoint={self._checkpoint})"
