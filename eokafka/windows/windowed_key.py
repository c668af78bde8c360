"""The key of a windowed aggregate, and its format on the wire."""

from __future__ import annotations

import struct
from typing import Any, Final, NamedTuple

from eokafka.serdes import Serde, SerdeError
from eokafka.windows.markers import Sentinel

_BOUNDS = struct.Struct(">qq")


class Windowed(NamedTuple):
    """The key of a windowed aggregate: the grouping key and its window's bounds (ms)."""

    key: Any
    start: int
    end: int


_NO_KEY: Final[Any] = Sentinel("NO_KEY")
_IMMUTABLE_KEYS: Final = frozenset({str, bytes, int})


class WindowedSerde:
    """Windowed keys on the wire: the inner serde's key bytes, then start and end.

    ``key bytes + 8-byte big-endian signed start + 8-byte big-endian signed end`` (ms).
    Any language reads it: the last 16 bytes are the window, the rest is the key.
    """

    __slots__ = ("inner", "name", "_last")

    def __init__(self, inner: Serde) -> None:
        self.inner = inner
        self.name = f"Windowed({inner.name})"
        # The last str/bytes/int key and its bytes: an update emits one window per record,
        # all with the key the aggregation just serialized, so encode each key once.
        self._last: tuple[Any, bytes] = (_NO_KEY, b"")

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if type(value) is Windowed:
            key, start, end = value
        elif isinstance(value, Windowed):
            key, start, end = value.key, value.start, value.end
        else:
            raise SerdeError(
                self.name, f"{self.name} needs a Windowed key, not {type(value).__qualname__}"
            )
        last = self._last
        if key is last[0]:
            data = last[1]
        else:
            data = self.inner.serialize(key) or b""
            if type(key) in _IMMUTABLE_KEYS:
                self._last = (key, data)
        return data + _BOUNDS.pack(start, end)

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        if len(data) < 16:
            raise SerdeError(self.name, f"{self.name} needs at least 16 bytes, got {len(data)}")
        start, end = struct.unpack_from(">qq", data, len(data) - 16)
        return Windowed(self.inner.deserialize(bytes(data[:-16])), start, end)

    def __repr__(self) -> str:
        return f"WindowedSerde({self.inner!r})"
