"""Avro serdes through fastavro: schemaless with a given schema, and the Confluent wire format."""

from __future__ import annotations

import contextlib
import io
import json
import struct
from collections.abc import Callable
from typing import Any, Final

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError
from fastavro.validation import validate as avro_validate

from eokafka.serdes.core import _MAX_REASON, SerdeError, _reason, _size

AvroSchema = dict[str, Any] | str | list[Any]
"""An Avro schema as a dict, a JSON string, a bare type name ("string") or a union list."""


def _parse_avro_schema(schema: Any) -> Any:
    """Parse once, up front: fastavro re-parses unparsed schemas on every call."""
    if isinstance(schema, str):
        # JSON text, or else a bare type name such as "string", which fastavro takes as is.
        with contextlib.suppress(json.JSONDecodeError):
            schema = json.loads(schema)
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
