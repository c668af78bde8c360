"""One key's window state, and its bytes in the window store."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

NEVER: Final = -(2**63)  # the lowest int64: "before any time"
_BIG = struct.Struct(">q")
_ENTRY = struct.Struct(">qqI")
_FIRST = struct.Struct(">qqqI")  # the mark and one entry header
_NULL_LEN: Final = 0xFFFFFFFF


@dataclass(slots=True)
class KeyState:
    """One key's open windows: ``[start, end, aggregate]`` sorted by start.

    Sliding windows keep the key's records instead, ``[timestamp, 0, value]`` in arrival
    order, and ``mark``: windows ending at or before it are closed.
    """

    entries: list[list[Any]] = field(default_factory=list)
    mark: int = NEVER


def encode_state(state: KeyState, serialize: Callable[[Any], bytes | None]) -> bytes:
    """``mark`` (int64) then per entry: int64, int64, uint32 length, payload (big-endian).

    The payload is the aggregate (or the record's value, for sliding windows) written by
    the store's value serde; a None payload has length 0xFFFFFFFF.
    """
    entries = state.entries
    if len(entries) == 1:  # the common case, tumbling windows: one pack, one join
        a, b, payload = entries[0]
        data = serialize(payload)
        if data is None:
            return _FIRST.pack(state.mark, a, b, _NULL_LEN)
        return _FIRST.pack(state.mark, a, b, len(data)) + data
    parts = [_BIG.pack(state.mark)]
    for a, b, payload in entries:
        data = serialize(payload)
        if data is None:
            parts.append(_ENTRY.pack(a, b, _NULL_LEN))
        else:
            parts.append(_ENTRY.pack(a, b, len(data)))
            parts.append(data)
    return b"".join(parts)


def decode_state(data: bytes, deserialize: Callable[[bytes | None], Any]) -> KeyState:
    (mark,) = _BIG.unpack_from(data, 0)
    entries: list[list[Any]] = []
    at, end = _BIG.size, len(data)
    while at < end:
        a, b, size = _ENTRY.unpack_from(data, at)
        at += _ENTRY.size
        if size == _NULL_LEN:
            entries.append([a, b, deserialize(None)])
        else:
            entries.append([a, b, deserialize(data[at : at + size])])
            at += size
    return KeyState(entries, mark)
