"""Serdes: turn record keys and values into bytes and back.

Serdes run once per record on the hot path, so every serde does its setup (schema parsing,
encoder construction, header packing) in ``__init__`` and keeps ``serialize``/``deserialize``
to the work that has to happen per call. ``None`` always maps to ``None`` in both directions
because Kafka uses it for null keys and tombstones, which no format should reinterpret.

Failures raise :class:`SerdeError` whose message names the serde; the runtime adds the topic,
partition and offset it knows and the serde does not.
"""

from __future__ import annotations

import codecs
import enum
import io
import json
import math
import re
import struct
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final, Literal, Protocol, runtime_checkable

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError
from fastavro.validation import validate as avro_validate

_orjson: ModuleType | None
try:
    import orjson as _orjson
except ImportError:  # orjson is optional: Json falls back to the stdlib encoder.
    _orjson = None

__all__ = [
    "Avro",
    "AvroSchema",
    "Bytes",
    "ConfluentAvro",
    "Json",
    "Serde",
    "SerdeError",
    "String",
    "is_identity",
]

AvroSchema = dict[str, Any] | str | list[Any]
"""An Avro schema as a dict, a JSON string, a bare type name ("string") or a union list."""

_MAX_REASON: Final = 1000  # fastavro can dump whole schemas into a message; keep logs readable.


class SerdeError(Exception):
    """Raised by a serde for input it can't handle; the runtime adds topic/partition/offset.

    ``serde`` is the serde's ``name`` so handlers (DLQ routing, metrics) can group failures
    without parsing the message.
    """

    serde: str

    def __init__(self, serde: str, message: str) -> None:
        super().__init__(message)
        self.serde = serde

    def __reduce__(self) -> tuple[Any, ...]:
        # The two-argument __init__ would break the default pickling, which replays self.args;
        # errors must survive crossing process boundaries (worker pools, multiprocessing).
        return (type(self), (self.serde, self.args[0]), self.__dict__)


@runtime_checkable
class Serde(Protocol):
    """What the runtime needs from a serde; any object with these members will do."""

    @property
    def name(self) -> str:
        """How error messages and logs refer to the serde."""
        ...

    def serialize(self, value: Any) -> bytes | None: ...

    def deserialize(self, data: bytes | None) -> Any: ...


def _reason(exc: BaseException) -> str:
    """Name the exception too: fastavro's messages (IndexError, EOFError) are often bare."""
    text = str(exc)
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return reason if len(reason) <= _MAX_REASON else reason[:_MAX_REASON] + "..."


def _size(data: object) -> str:
    """Describe the input by size when it is bytes-like, by type when it is not."""
    if isinstance(data, bytes | bytearray | memoryview):
        size = memoryview(data).nbytes
        return "1 byte" if size == 1 else f"{size} bytes"
    return f"a value of type {type(data).__qualname__} (expected bytes)"


# --------------------------------------------------------------------------------------- Bytes


class Bytes:
    """Pass-through serde for payloads the application handles as raw bytes."""

    __slots__ = ()
    name: Final = "Bytes"

    def serialize(self, value: Any) -> bytes | None:
        if value is None or type(value) is bytes:
            return value
        if isinstance(value, bytes | bytearray | memoryview):
            # Copy: a mutable buffer could change between produce() and the actual send.
            return bytes(value)
        raise SerdeError(
            self.name,
            f"Bytes cannot serialize a value of type {type(value).__qualname__}: "
            "expected bytes, bytearray or memoryview",
        )

    def deserialize(self, data: bytes | None) -> Any:
        return data

    def __repr__(self) -> str:
        return "Bytes()"


def is_identity(serde: object) -> bool:
    """True if the runtime may skip calling ``serde`` because it returns its input unchanged.

    Exact for ``deserialize``; skipping ``serialize`` also skips its type check, which is fine
    where the runtime already hands the producer bytes. Subclasses that override either method
    are not identities.
    """
    cls = type(serde)
    return (
        isinstance(serde, Bytes)
        and cls.serialize is Bytes.serialize
        and cls.deserialize is Bytes.deserialize
    )


# -------------------------------------------------------------------------------------- String

_str_encode: Final = str.encode  # raises TypeError for non-str, so one call does the type check


class String:
    """Text with a fixed encoding; strict, so bad bytes fail instead of turning into U+FFFD."""

    __slots__ = ("encoding", "name")

    def __init__(self, encoding: str = "utf-8") -> None:
        try:
            canonical = codecs.lookup(encoding).name
            "".encode(encoding)  # rejects bytes-to-bytes codecs such as "base64"
        except LookupError as exc:
            raise ValueError(f"String: unusable text encoding {encoding!r}: {exc}") from exc
        self.encoding = encoding
        self.name = "String" if canonical == "utf-8" else f"String(encoding={encoding})"

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        try:
            return _str_encode(value, self.encoding)
        except TypeError:
            raise SerdeError(
                self.name,
                f"{self.name} cannot serialize a value of type {type(value).__qualname__}: "
                "expected str",
            ) from None
        except UnicodeEncodeError as exc:
            raise SerdeError(
                self.name, f"{self.name} could not encode a {len(value)}-character str: {exc}"
            ) from exc

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            return str(data, self.encoding)
        except (UnicodeDecodeError, TypeError) as exc:
            raise SerdeError(
                self.name, f"{self.name} could not decode {_size(data)}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return "String()" if self.name == "String" else f"String(encoding={self.encoding!r})"


# ---------------------------------------------------------------------------------------- Json


def _json_default(value: Any) -> Any:
    """Teach the stdlib encoder the extra types orjson encodes natively, so backends agree."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"Object of type {type(value).__qualname__} is not JSON serializable")


def _reject_constant(token: str) -> Any:
    """NaN/Infinity are not JSON (RFC 8259); orjson rejects them, so the stdlib must too."""
    raise ValueError(f"{token} is not valid JSON")


_JSON_SCALARS: Final = frozenset({str, int, bool, type(None)})


def _has_non_finite(value: Any) -> bool:
    """True if a NaN/Infinity hides in ``value``; orjson would silently write it as null.

    Exact-type checks come first because this walks every record that encodes a null.
    """
    cls = type(value)
    if cls is dict:
        items: Any = value.values()
    elif cls is list or cls is tuple:
        items = value
    elif cls is float:
        return not math.isfinite(value)
    elif cls in _JSON_SCALARS:
        return False
    elif isinstance(value, float):
        return not math.isfinite(value)
    elif isinstance(value, enum.Enum):
        return _has_non_finite(value.value)
    elif isinstance(value, dict):
        items = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return False
    for item in items:
        if type(item) not in _JSON_SCALARS and _has_non_finite(item):
            return True
    return False


# orjson parses integer literals outside [-2**63, 2**64) as floats, losing precision; those
# literals have 19+ digits. The translate+find pre-filter is a cheap C-level scan that is
# almost always negative; only when it hits do we look at the literals themselves.
_DIGIT_MASK: Final = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_DIGIT_RUN: Final = b"0" * 19
_LONG_INT_LITERAL: Final = re.compile(rb"(?<![\w.+\-])-?\d{19,}(?![\w.])")
_ORJSON_INT_MIN: Final = -(2**63)
_ORJSON_INT_MAX: Final = 2**64 - 1


def _has_wide_int(data: bytes) -> bool:
    """True if ``data`` holds an integer literal that orjson would have turned into a float.

    Only called when the pre-filter found a run of 19+ digits.
    """
    return any(
        not _ORJSON_INT_MIN <= int(literal) <= _ORJSON_INT_MAX
        for literal in _LONG_INT_LITERAL.findall(data)
    )


# Without the passthrough options orjson would encode datetimes and dataclasses that the
# stdlib rejects, and a record would then serialize or fail depending on what is installed.
_ORJSON_DUMPS_OPTIONS: Final = (
    (_orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_DATACLASS) if _orjson else 0
)


class Json:
    """Compact UTF-8 JSON (RFC 8259), using orjson when it is installed.

    The stdlib and orjson backends accept and reject the same values and produce the same
    Python values and bytes, except that a float in exponent form may be spelled differently
    (``1e-07`` vs ``1e-7``). Where orjson is narrower (ints beyond 64 bits, non-str dict keys,
    lone surrogates in input, float subclasses) the call falls back to the stdlib for that
    record. NaN/Infinity are rejected both ways rather than written as ``null`` or as
    non-JSON tokens. Enums encode as their value and UUIDs as strings; datetimes and
    dataclasses are rejected on both backends.

    Parity costs the orjson path two guards: a C-level scan of the input for 19+ digit runs
    on decode, and a NaN walk of the value on encode when the output contains ``null``.
    """

    __slots__ = ("backend", "_std_encode", "_std_decode", "_dumps", "_loads")
    name: Final = "Json"

    def __init__(self, *, backend: Literal["auto", "orjson", "json"] = "auto") -> None:
        if backend not in ("auto", "orjson", "json"):
            raise ValueError(f"Json: backend must be 'auto', 'orjson' or 'json', not {backend!r}")
        if backend == "orjson" and _orjson is None:
            raise ImportError("Json(backend='orjson') needs the orjson package")
        use_orjson = _orjson is not None and backend != "json"
        self.backend: str = "orjson" if use_orjson else "json"
        self._std_encode = json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
        ).encode
        self._std_decode = json.JSONDecoder(parse_constant=_reject_constant).decode
        self._dumps: Callable[..., bytes] | None = _orjson.dumps if use_orjson else None
        self._loads: Callable[[Any], Any] | None = _orjson.loads if use_orjson else None

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        dumps = self._dumps
        if dumps is not None:
            try:
                out = dumps(value, option=_ORJSON_DUMPS_OPTIONS)
            except Exception:
                return self._serialize_std(value)  # the stdlib gives the result or the verdict
            # find(), not `in`: bytes.__contains__ first tries the operand as an int.
            if out.find(b"null") >= 0 and _has_non_finite(value):
                return self._serialize_std(value)  # raises: NaN/Infinity are not JSON
            return out
        return self._serialize_std(value)

    def _serialize_std(self, value: Any) -> bytes:
        try:
            return self._std_encode(value).encode("utf-8")
        except Exception as exc:
            raise SerdeError(
                self.name,
                f"Json could not encode a value of type {type(value).__qualname__}: {exc}",
            ) from exc

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        loads = self._loads
        if loads is not None:
            try:
                value = loads(data)
                exact = data.translate(_DIGIT_MASK).find(_DIGIT_RUN) < 0 or not _has_wide_int(data)
            except Exception:
                exact = False  # orjson is stricter; the stdlib gives the result or the verdict
            if exact:
                return value
        return self._deserialize_std(data)

    def _deserialize_std(self, data: Any) -> Any:
        try:
            # Decode explicitly: json.loads(bytes) would guess UTF-16/32 and accept a BOM.
            return self._std_decode(str(data, "utf-8"))
        except Exception as exc:
            has_bom = isinstance(data, bytes) and data.startswith(codecs.BOM_UTF8)
            bom = " (the data starts with a UTF-8 BOM)" if has_bom else ""
            raise SerdeError(self.name, f"Json could not decode {_size(data)}: {exc}{bom}") from exc

    def __repr__(self) -> str:
        return f"Json(backend={self.backend!r})"


# ---------------------------------------------------------------------------------------- Avro


def _parse_avro_schema(schema: Any) -> Any:
    """Parse once, up front: fastavro re-parses unparsed schemas on every call."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError:
            pass  # a bare type name such as "string"
    try:
        return parse_schema(schema)
    except Exception as exc:
        raise ValueError(f"invalid Avro schema: {_reason(exc)}") from exc


def _schema_label(schema: Any) -> str:
    """A short human name for a parsed schema: the record's full name, or the type shape."""
    if isinstance(schema, list):
        return "[" + ", ".join(_schema_label(branch) for branch in schema) + "]"
    if not isinstance(schema, dict):
        return str(schema)
    kind = schema.get("type")
    if "logicalType" in schema:
        return str(schema["logicalType"])
    if "name" in schema:
        return str(schema["name"])
    if kind == "array":
        return f"array<{_schema_label(schema.get('items'))}>"
    if kind == "map":
        return f"map<{_schema_label(schema.get('values'))}>"
    return _schema_label(kind)


def _describe_invalid(error: Any) -> str:
    """fastavro's reason, with schemas shown by name instead of dumped with parser internals."""
    try:
        field, datum, schema = error.field, error.datum, error.schema
    except AttributeError:
        return str(error)
    got = "None" if datum is None else f"{datum!r:.80} ({type(datum).__qualname__})"
    return f"{field or 'the value'} is {got}, expected {_schema_label(schema)}"


def _validate_avro(name: str, value: Any, schema: Any) -> None:
    """Reject what fastavro's writer would silently coerce (5.7 or True into a long)."""
    try:
        avro_validate(value, schema, raise_errors=True)
    except ValidationError as exc:
        reason = "; ".join(_describe_invalid(error) for error in exc.errors)
        if len(reason) > _MAX_REASON:
            reason = reason[:_MAX_REASON] + "..."
        raise SerdeError(
            name, f"{name} rejected a value of type {type(value).__qualname__}: {reason}"
        ) from None
    except Exception as exc:
        raise SerdeError(
            name,
            f"{name} rejected a value of type {type(value).__qualname__}: {_reason(exc)}",
        ) from exc


def _write_avro(name: str, buf: io.BytesIO, value: Any, schema: Any) -> bytes:
    try:
        schemaless_writer(buf, schema, value)
    except Exception as exc:
        raise SerdeError(
            name,
            f"{name} could not encode a value of type {type(value).__qualname__}: {_reason(exc)}",
        ) from exc
    return buf.getvalue()


def _read_avro(name: str, data: Any, buf: io.BytesIO, writer: Any, reader: Any, what: str) -> Any:
    """Read one record and insist it used all the bytes: leftovers mean a schema mismatch."""
    try:
        value = schemaless_reader(buf, writer, reader)
    except EOFError:
        raise SerdeError(name, f"{name} could not decode {_size(data)}{what}: truncated") from None
    except Exception as exc:
        raise SerdeError(
            name, f"{name} could not decode {_size(data)}{what}: {_reason(exc)}"
        ) from exc
    leftover = len(data) - buf.tell()
    if leftover:
        raise SerdeError(
            name,
            f"{name} could not decode {_size(data)}{what}: "
            f"{leftover} unread byte{'' if leftover == 1 else 's'} after the record",
        )
    return value


class Avro:
    """Schemaless Avro binary: both sides agree on one schema out of band."""

    __slots__ = ("name", "schema", "validate")

    def __init__(self, schema: AvroSchema, *, validate: bool = True) -> None:
        """``validate=False`` skips fastavro's validation (about half the write cost) for
        producers that already guarantee well-typed records."""
        self.schema: Any = _parse_avro_schema(schema)
        self.validate = validate
        self.name = f"Avro(schema={_schema_label(self.schema)})"

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if self.validate:
            _validate_avro(self.name, value, self.schema)
        return _write_avro(self.name, io.BytesIO(), value, self.schema)

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            buf = io.BytesIO(data)
        except TypeError:
            raise SerdeError(self.name, f"{self.name} could not decode {_size(data)}") from None
        return _read_avro(self.name, data, buf, self.schema, None, "")

    def __repr__(self) -> str:
        if self.validate:
            return self.name
        return f"Avro(schema={_schema_label(self.schema)}, validate=False)"


# ------------------------------------------------------------------------------- ConfluentAvro

_CONFLUENT_HEADER: Final = struct.Struct(">BI")  # magic byte 0, big-endian schema id
_MAX_SCHEMA_ID: Final = 2**31 - 1  # Schema Registry ids are Java ints


class ConfluentAvro:
    """Avro in the Confluent wire format: ``0x00``, 4-byte big-endian schema id, Avro body.

    ``schema``/``schema_id`` are the writer schema used to serialize and the schema known for
    that id. ``lookup(schema_id)`` fetches writer schemas for other ids (a dict, a JSON string,
    or an object with ``schema_str`` such as a Schema Registry ``Schema``); results are parsed
    and cached per id, failures are not, so a registry blip is retried on the next record.
    When ``schema`` is given it is also the reader schema, so records written with older or
    newer compatible schemas are resolved into its shape.
    """

    __slots__ = ("name", "schema", "schema_id", "lookup", "validate", "_header", "_cache")

    def __init__(
        self,
        schema: AvroSchema | None = None,
        schema_id: int | None = None,
        lookup: Callable[[int], Any] | None = None,
        *,
        validate: bool = True,
    ) -> None:
        if schema_id is not None:
            if isinstance(schema_id, bool) or not isinstance(schema_id, int):
                raise ValueError(f"ConfluentAvro: schema_id must be an int, not {schema_id!r}")
            if not 0 <= schema_id <= _MAX_SCHEMA_ID:
                raise ValueError(f"ConfluentAvro: schema_id {schema_id} is out of range")
            if schema is None:
                raise ValueError("ConfluentAvro: schema_id needs the schema it identifies")
        if lookup is None and schema_id is None:
            raise ValueError("ConfluentAvro needs schema and schema_id, a lookup, or both")
        self.schema: Any = None if schema is None else _parse_avro_schema(schema)
        self.schema_id = schema_id
        self.lookup = lookup
        self.validate = validate
        parts = []
        if self.schema is not None:
            parts.append(f"schema={_schema_label(self.schema)}")
        if schema_id is not None:
            parts.append(f"schema_id={schema_id}")
        self.name = f"ConfluentAvro({', '.join(parts)})" if parts else "ConfluentAvro"
        # schema id -> (writer schema, reader schema or None when no resolution is needed)
        self._cache: dict[int, tuple[Any, Any]] = {}
        self._header: bytes | None = None
        if schema_id is not None:
            self._header = _CONFLUENT_HEADER.pack(0, schema_id)
            self._cache[schema_id] = (self.schema, None)

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if self._header is None:
            raise SerdeError(
                self.name, f"{self.name} cannot serialize: it needs both schema and schema_id"
            )
        if self.validate:
            _validate_avro(self.name, value, self.schema)
        buf = io.BytesIO()
        buf.write(self._header)
        return _write_avro(self.name, buf, value, self.schema)

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            magic, schema_id = _CONFLUENT_HEADER.unpack_from(data)
        except (struct.error, TypeError):
            raise SerdeError(
                self.name,
                f"{self.name} could not decode {_size(data)}: the Confluent wire format needs "
                "at least 5 bytes (magic byte 0 and a 4-byte schema id)",
            ) from None
        if magic != 0:
            raise SerdeError(
                self.name,
                f"{self.name} could not decode {_size(data)}: magic byte is {magic}, expected 0 "
                "(not Confluent wire format)",
            )
        schemas = self._cache.get(schema_id)
        if schemas is None:
            schemas = self._resolve(schema_id)
        buf = io.BytesIO(data)
        buf.seek(5)
        return _read_avro(
            self.name, data, buf, schemas[0], schemas[1], f" with schema id {schema_id}"
        )

    def _resolve(self, schema_id: int) -> tuple[Any, Any]:
        """Fetch, parse and cache the writer schema for an id seen for the first time."""
        name = self.name
        if self.lookup is None:
            raise SerdeError(
                name,
                f"{name} got schema id {schema_id} but has no lookup and only knows "
                f"schema id {self.schema_id}",
            )
        try:
            found = self.lookup(schema_id)
        except Exception as exc:
            raise SerdeError(
                name, f"{name} could not look up schema id {schema_id}: {_reason(exc)}"
            ) from exc
        if found is None:
            raise SerdeError(
                name, f"{name} found no schema for schema id {schema_id}: lookup returned None"
            )
        found = getattr(found, "schema_str", found)
        try:
            writer = _parse_avro_schema(found)
        except ValueError as exc:
            raise SerdeError(
                name, f"{name} got a bad schema for schema id {schema_id}: {exc}"
            ) from exc
        reader = None if self.schema is None or writer == self.schema else self.schema
        self._cache[schema_id] = (writer, reader)
        return writer, reader

    def __repr__(self) -> str:
        args = []
        if self.schema is not None:
            args.append(f"schema={_schema_label(self.schema)}")
        if self.schema_id is not None:
            args.append(f"schema_id={self.schema_id}")
        if self.lookup is not None:
            label = getattr(self.lookup, "__qualname__", None) or repr(self.lookup)
            args.append(f"lookup={label}")
        if not self.validate:
            args.append("validate=False")
        return f"ConfluentAvro({', '.join(args)})"
