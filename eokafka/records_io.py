"""Records as JSON lines, for ``eokafka produce`` and ``eokafka consume``.

One line is one record: ``{"key": ..., "value": ..., "headers": {...}, "partition": n,
"timestamp": ms}``; only ``value`` is required, ``null`` is a tombstone. ``consume`` writes
the same shape with the record's ``partition``, ``offset`` and ``timestamp``, so its output
can be fed back to ``produce`` (which ignores ``offset``).

A serde turns the JSON of a key or value into the record's bytes and back: ``json`` (the
JSON value itself, as ``serdes.Json``), ``string`` (a JSON string, UTF-8), ``base64`` (a
JSON string of base64, for bytes that are neither), or ``app`` (the serde the app declared
for the topic, with ``--app``: JSON in, the app's bytes out, e.g. Avro).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from eokafka.errors import EokafkaError
from eokafka.serdes import Json, Serde

FORMATS = ("json", "string", "base64", "app")
_FIELDS = frozenset({"key", "value", "headers", "partition", "timestamp", "offset"})
Header = tuple[str, bytes | None]


class RecordFormatError(EokafkaError):
    """A line or a record that the chosen format can't carry; names the line or record."""


@dataclass(frozen=True)
class Codec:
    """One format, both ways: JSON value -> bytes (produce), bytes -> JSON value (consume)."""

    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def _string_encode(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"it takes a JSON string, not {type(value).__name__}")
    return value.encode()


def _base64_encode(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"it takes a JSON string of base64, not {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from None


def _serde_codec(name: str, serde: Serde) -> Codec:
    def encode(value: Any) -> bytes:
        data = serde.serialize(value)
        if data is None:
            raise ValueError(f"{serde.name} serialized the value to nothing")
        return data

    return Codec(name, encode, serde.deserialize)


def codec(name: str, app_serde: Serde | None = None) -> Codec:
    """The codec of a format name (``app`` needs the app's serde for the topic)."""
    if name == "json":
        return _serde_codec("json", Json())
    if name == "string":
        return Codec("string", _string_encode, lambda data: data.decode())
    if name == "base64":
        return Codec("base64", _base64_encode, lambda data: base64.b64encode(data).decode())
    if name == "app":
        if app_serde is None:
            raise RecordFormatError("the app format needs --app module:app and a topic it reads")
        return _serde_codec(f"app ({app_serde.name})", app_serde)
    raise RecordFormatError(f"format {name!r}: choose one of {', '.join(FORMATS)}")


@dataclass(frozen=True)
class OutRecord:
    """A record to produce, encoded; ``line`` is where it came from (1-based)."""

    line: int
    key: bytes | None
    value: bytes | None
    headers: list[Header]
    partition: int | None
    timestamp: int | None


def parse_headers(pairs: Iterable[str]) -> list[Header]:
    """``--header name=value`` options."""
    out: list[Header] = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise RecordFormatError(f"--header {pair!r}: expected name=value")
        out.append((name, value.encode()))
    return out


def _headers(raw: Any, where: str) -> list[Header]:
    items = raw.items() if isinstance(raw, dict) else raw
    out: list[Header] = []
    try:
        for name, value in items:
            values = value if isinstance(value, list) else [value]
            for v in values:
                if v is not None and not isinstance(v, str):
                    raise TypeError
                out.append((str(name), None if v is None else v.encode()))
    except (TypeError, ValueError):
        raise RecordFormatError(
            f"{where}: headers must be an object of strings (or lists of strings), or a list "
            'of [name, value] pairs, e.g. {"source": "cli"}'
        ) from None
    return out


def _int(raw: Any, name: str, where: str) -> int | None:
    if raw is None:
        return None
    if type(raw) is not int or raw < 0:
        raise RecordFormatError(f"{where}: {name} must be an integer >= 0, not {raw!r}")
    return raw


def parse_lines(
    lines: Iterable[str],
    key: Codec,
    value: Codec,
    source: str = "stdin",
    headers: Iterable[Header] = (),
) -> Iterator[OutRecord]:
    """The records of JSON lines, ``headers`` added to each; blank lines are skipped, a bad
    one raises naming it."""
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        where = f"{source} line {number}"
        try:
            item = json.loads(text)
        except ValueError as exc:
            raise RecordFormatError(f"{where}: not JSON ({exc})") from None
        if not isinstance(item, dict) or "value" not in item:
            raise RecordFormatError(
                f'{where}: expected an object with "value" (and optionally "key", "headers", '
                f'"partition", "timestamp"), e.g. {{"key": "alice", "value": {{"qty": 1}}}}'
            )
        unknown = sorted(set(item) - _FIELDS)
        if unknown:
            raise RecordFormatError(f"{where}: unknown field(s) {', '.join(unknown)}")
        yield OutRecord(
            number,
            _encode(key, item.get("key"), "key", where),
            _encode(value, item["value"], "value", where),
            [*_headers(item.get("headers") or {}, where), *headers],
            _int(item.get("partition"), "partition", where),
            _int(item.get("timestamp"), "timestamp", where),
        )


def _encode(fmt: Codec, raw: Any, what: str, where: str) -> bytes | None:
    if raw is None:
        return None
    try:
        return fmt.encode(raw)
    except Exception as exc:
        option = "--key-serde" if what == "key" else "--value-serde"
        raise RecordFormatError(
            f"{where}: the {what} does not fit {option} {fmt.name}: {exc}"
        ) from None


def record_line(
    key: bytes | None,
    value: bytes | None,
    headers: list[Header] | None,
    partition: int,
    offset: int,
    timestamp: int,
    formats: tuple[Codec, Codec],
    where: str,
) -> str:
    """One consumed record as a JSON line (``where`` names it in an error)."""
    item: dict[str, Any] = {
        "key": _decode(formats[0], key, "key", where),
        "value": _decode(formats[1], value, "value", where),
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp,
    }
    if headers:
        shown: dict[str, Any] = {}
        for name, raw in headers:
            text = None if raw is None else raw.decode(errors="backslashreplace")
            if name in shown:
                before = shown[name]
                shown[name] = [*before, text] if isinstance(before, list) else [before, text]
            else:
                shown[name] = text
        item["headers"] = shown
    return json.dumps(item, ensure_ascii=False, default=_jsonable)


def _jsonable(value: Any) -> Any:
    """What an app's serde may decode to that JSON has no type for: bytes as base64."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    return str(value)


def _decode(fmt: Codec, data: bytes | None, what: str, where: str) -> Any:
    if data is None:
        return None
    try:
        return fmt.decode(data)
    except Exception as exc:
        other = "string or base64" if fmt.name == "json" else "base64"
        option = "--key-serde" if what == "key" else "--value-serde"
        raise RecordFormatError(
            f"{where}: its {what} is not {fmt.name} ({exc}); read it with {option} {other}"
        ) from None
