"""The store of a global table: read by every task, written only by its topic's records.

Processors read it like any store (``ctx.store(name)``); its committed state is the topic as
this worker has read it, applied a batch at a time by the global table reader
(``eokafka.runtime.process.global_tables``). No task owns it, nothing is written for it in a
transaction, so a processor's write is refused rather than lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eokafka.errors import TopologyError
from eokafka.serdes import Serde
from eokafka.state.backend import InMemoryBackend
from eokafka.state.store import Store


class GlobalStore(Store):
    """A read-only :class:`Store` in memory; :meth:`apply` takes the topic's records."""

    __slots__ = ()

    def __init__(self, name: str, key_serde: Serde, value_serde: Serde) -> None:
        super().__init__(name, InMemoryBackend(), key_serde, value_serde)

    def apply(self, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Records of the topic in offset order: the last value per key wins, None deletes;
        records without a key are not table rows and are skipped by the reader."""
        self.backend.apply(dict(records), None)
        self._derived_reset()

    def put(self, key: Any, value: Any) -> None:
        raise self._read_only()

    def delete(self, key: Any) -> None:
        raise self._read_only()

    def _read_only(self) -> TopologyError:
        return TopologyError(
            f"global table {self.name!r} is read-only: it holds its topic as read; write "
            "to the topic to change it"
        )
