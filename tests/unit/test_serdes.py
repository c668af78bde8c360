"""Unit tests for eokafka.serdes: round-trips, wire layouts and error messages."""

from __future__ import annotations

import enum
import importlib.util
import io
import json
import pickle
import re
import struct
import sys
import uuid
from collections.abc import Callable
from typing import Any

import fastavro
import pytest

from eokafka import serdes
from eokafka.serdes import (
    Avro,
    Bytes,
    ConfluentAvro,
    Json,
    Serde,
    SerdeError,
    String,
    is_identity,
)

# orjson is a dependency: both backends are tested everywhere, none is skipped.
JSON_BACKENDS = ["json", "orjson"]

ORDER_V1: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "com.acme",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ],
}
# v2 adds a field with a default: a v2 reader can read v1 data (backward compatible).
ORDER_V2: dict[str, Any] = {
    **ORDER_V1,
    "fields": [*ORDER_V1["fields"], {"name": "currency", "type": "string", "default": "EUR"}],
}
ORDER = {"id": 42, "customer": "Zoë", "amount": 12.5, "note": None, "tags": ["a", "b"]}
ORDER_WITH_NOTE = {**ORDER, "note": "gift wrap 🎁"}


def raises_serde_error(serde_name: str, *fragments: str) -> Callable[[Callable[[], Any]], str]:
    """Run a call, assert it raised SerdeError naming ``serde_name`` and the fragments."""

    def check(call: Callable[[], Any]) -> str:
        with pytest.raises(SerdeError) as info:
            call()
        message = str(info.value)
        assert info.value.serde == serde_name
        assert message.startswith(serde_name), message
        for fragment in fragments:
            assert fragment in message, message
        return message

    return check


# ----------------------------------------------------------------------------------- SerdeError


def test_serde_error_keeps_serde_and_message_across_pickle() -> None:
    err = SerdeError("Json", "Json could not decode 3 bytes: boom")
    err.add_note("topic=orders partition=3 offset=17")
    copy = pickle.loads(pickle.dumps(err))
    assert isinstance(copy, SerdeError)
    assert copy.serde == "Json"
    assert str(copy) == "Json could not decode 3 bytes: boom"
    assert copy.__notes__ == ["topic=orders partition=3 offset=17"]


@pytest.mark.parametrize(
    "serde",
    [Bytes(), String(), Json(), Avro(ORDER_V1), ConfluentAvro(ORDER_V1, 1)],
    ids=repr,
)
def test_every_serde_matches_protocol_and_maps_none_to_none(serde: Serde) -> None:
    assert isinstance(serde, Serde)
    assert serde.serialize(None) is None
    assert serde.deserialize(None) is None


def test_names_and_reprs_read_well() -> None:
    assert Bytes().name == "Bytes" and repr(Bytes()) == "Bytes()"
    assert String().name == "String" and repr(String()) == "String()"
    assert String("latin-1").name == "String(encoding=latin-1)"
    assert repr(String("latin-1")) == "String(encoding='latin-1')"
    assert Json().name == "Json"
    assert repr(Json(backend="json")) == "Json(backend='json')"
    assert Avro(ORDER_V1).name == "Avro(schema=com.acme.Order)"
    assert repr(Avro(ORDER_V1, validate=False)) == "Avro(schema=com.acme.Order, validate=False)"
    assert Avro("string").name == "Avro(schema=string)"
    assert Avro(["null", "long"]).name == "Avro(schema=[null, long])"
    assert Avro({"type": "map", "values": "long"}).name == "Avro(schema=map<long>)"
    assert ConfluentAvro(ORDER_V1, 7).name == "ConfluentAvro(schema=com.acme.Order, schema_id=7)"
    assert ConfluentAvro(lookup=str).name == "ConfluentAvro"

    def fetch(schema_id: int) -> str:
        return "long"

    assert "lookup=" in repr(ConfluentAvro(ORDER_V1, 7, lookup=fetch))
    assert "fetch" in repr(ConfluentAvro(ORDER_V1, 7, lookup=fetch))


# ---------------------------------------------------------------------------------------- Bytes


def test_bytes_is_identity() -> None:
    serde = Bytes()
    payload = b"\x00\xffraw"
    assert serde.serialize(payload) is payload
    assert serde.deserialize(payload) is payload
    assert serde.serialize(bytearray(b"ab")) == b"ab"
    assert type(serde.serialize(bytearray(b"ab"))) is bytes
    assert serde.serialize(memoryview(b"xyz")[1:]) == b"yz"


def test_bytes_rejects_non_bytes_naming_the_type() -> None:
    raises_serde_error("Bytes", "str", "expected bytes")(lambda: Bytes().serialize("text"))
    raises_serde_error("Bytes", "int")(lambda: Bytes().serialize(5))


def test_is_identity() -> None:
    class LoggingBytes(Bytes):
        __slots__ = ()

        def deserialize(self, data: bytes | None) -> Any:
            return data

    class PlainSubclass(Bytes):
        __slots__ = ()

    assert is_identity(Bytes())
    assert is_identity(PlainSubclass())
    assert not is_identity(LoggingBytes())
    for other in (String(), Json(), Avro("long"), ConfluentAvro("long", 1), object()):
        assert not is_identity(other)


# --------------------------------------------------------------------------------------- String


@pytest.mark.parametrize("text", ["", "hello", "Zoë 東京 🎉", "\x00\n"])
def test_string_round_trip(text: str) -> None:
    serde = String()
    assert serde.serialize(text) == text.encode("utf-8")
    assert serde.deserialize(serde.serialize(text)) == text


def test_string_other_encoding() -> None:
    serde = String("latin-1")
    assert serde.serialize("café") == b"caf\xe9"
    assert serde.deserialize(b"caf\xe9") == "café"


def test_string_errors_name_the_serde() -> None:
    check = raises_serde_error("String", "could not decode 2 bytes", "utf-8")
    check(lambda: String().deserialize(b"\xff\xfe"))
    raises_serde_error("String", "int", "expected str")(lambda: String().serialize(12))
    raises_serde_error("String", "bytes", "expected str")(lambda: String().serialize(b"x"))
    raises_serde_error("String(encoding=ascii)", "could not encode a 1-character str")(
        lambda: String("ascii").serialize("é")
    )
    raises_serde_error("String", "type int")(lambda: String().deserialize(5))  # type: ignore[arg-type]


def test_string_rejects_unusable_encodings() -> None:
    with pytest.raises(ValueError, match="no-such-codec"):
        String("no-such-codec")
    with pytest.raises(ValueError, match="base64"):
        String("base64")


# ----------------------------------------------------------------------------------------- Json


@pytest.fixture(params=JSON_BACKENDS)
def json_serde(request: pytest.FixtureRequest) -> Json:
    serde = Json(backend=request.param)
    assert serde.backend == request.param
    return serde


NESTED = {
    "id": 7,
    "name": "Zoë 東京 🎉",
    "ok": True,
    "missing": None,
    "ratio": 0.25,
    "neg": -3,
    "items": [{"sku": "A-1", "qty": 2, "tags": []}, {"sku": "B", "dims": [1.5, 2, [3]]}],
    "empty": {},
}


ROUND_TRIP_VALUES: list[Any] = [
    NESTED, [1, "two", None, False], "just a string", 0, -1.5, True, {}, []
]


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES)
def test_json_round_trip(json_serde: Json, value: Any) -> None:
    data = json_serde.serialize(value)
    assert isinstance(data, bytes)
    assert json_serde.deserialize(data) == value


def test_json_output_is_compact_utf8(json_serde: Json) -> None:
    value = {"a": [1, 2.5, "é"], "b": None, "c": 'line\nbreak "quoted"'}
    expected = '{"a":[1,2.5,"é"],"b":null,"c":"line\\nbreak \\"quoted\\""}'.encode()
    assert json_serde.serialize(value) == expected


def test_json_null_document_is_none_and_none_is_not_encoded(json_serde: Json) -> None:
    assert json_serde.deserialize(b"null") is None
    assert json_serde.serialize(None) is None


@pytest.mark.parametrize("value", [0, 7, -1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**40])
def test_json_top_level_ints_are_the_stdlib_bytes(json_serde: Json, value: int) -> None:
    """Counts skip the orjson call; what they write must not depend on that."""
    assert json_serde.serialize(value) == json_serde.serialize_kept(value)
    assert json_serde.serialize(value) == json.dumps(value).encode()
    assert json_serde.deserialize(json_serde.serialize(value)) == value
    assert json_serde.serialize(True) == b"true" and json_serde.serialize(False) == b"false"


def test_json_keeps_ints_beyond_64_bits_exact(json_serde: Json) -> None:
    values = [2**64, -(2**63) - 1, 10**30, -(10**25)]
    for big in values:
        data = json_serde.serialize({"n": big})
        assert data == b'{"n":' + str(big).encode() + b"}"
        decoded = json_serde.deserialize(data)
        assert decoded == {"n": big} and type(decoded["n"]) is int
    # Values at the edge of the 64-bit range and 19-digit nanosecond timestamps stay ints too.
    edge = (
        b'[18446744073709551615,-9223372036854775808,1700000000123456789,"12345678901234567890123"]'
    )
    assert json_serde.deserialize(edge) == [
        2**64 - 1,
        -(2**63),
        1700000000123456789,
        "12345678901234567890123",
    ]


def test_json_extra_types_agree(json_serde: Json) -> None:
    class Color(enum.Enum):
        RED = "red"
        ONE = 1

    uid = uuid.UUID(int=5)
    assert json_serde.serialize([Color.RED, Color.ONE, uid]) == (
        b'["red",1,"00000000-0000-0000-0000-000000000005"]'
    )
    assert json_serde.serialize({1: "a"}) == b'{"1":"a"}'  # stdlib key coercion on both


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "could not decode 0 bytes: Expecting value"),
        (b"{not json", "could not decode 9 bytes"),
        (b'{"a":1} trailing', "Extra data"),
        (b"\xff\xfe", "can't decode byte 0xff"),
        (b"NaN", "NaN is not valid JSON"),
        (b"[-Infinity]", "-Infinity is not valid JSON"),
        (b"\xef\xbb\xbf{}", "BOM"),
        (b"[1,]", "could not decode 4 bytes"),
    ],
)
def test_json_bad_bytes(json_serde: Json, data: bytes, fragment: str) -> None:
    raises_serde_error("Json", fragment)(lambda: json_serde.deserialize(data))


@pytest.mark.parametrize("data", [5, '{"a": 1}'])
def test_json_rejects_non_bytes_input(json_serde: Json, data: Any) -> None:
    raises_serde_error("Json", "could not decode a value of type", "expected bytes")(
        lambda: json_serde.deserialize(data)
    )


def test_json_error_message_format(json_serde: Json) -> None:
    with pytest.raises(SerdeError) as info:
        json_serde.deserialize(b"x" * 37)
    assert str(info.value) == (
        "Json could not decode 37 bytes: Expecting value: line 1 column 1 (char 0)"
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (object(), "value of type object"),
        ({"when": {1, 2}}, "set is not JSON serializable"),
        (b"bytes", "bytes is not JSON serializable"),
        (float("nan"), "Out of range float"),
        ({"a": [None, float("inf")]}, "Out of range float"),
        ("\ud800", "surrogates not allowed"),
    ],
)
def test_json_unserializable(json_serde: Json, value: Any, fragment: str) -> None:
    raises_serde_error("Json", "could not encode", fragment)(lambda: json_serde.serialize(value))


def test_json_rejects_datetimes_on_every_backend(json_serde: Json) -> None:
    import datetime

    raises_serde_error("Json", "datetime")(
        lambda: json_serde.serialize({"at": datetime.datetime(2024, 1, 1)})
    )


def test_json_backend_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Json(backend="json").backend == "json"
    assert Json().backend == "orjson"
    with pytest.raises(ValueError, match="backend"):
        Json(backend="simplejson")  # type: ignore[arg-type]
    monkeypatch.setattr(serdes.core, "_orjson", None)
    assert Json().backend == "json"
    with pytest.raises(ImportError, match="orjson"):
        Json(backend="orjson")


def test_json_falls_back_to_the_stdlib_when_orjson_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh copy of the module, imported while ``import orjson`` fails."""
    monkeypatch.setitem(sys.modules, "orjson", None)  # makes `import orjson` raise ImportError
    spec = importlib.util.find_spec("eokafka.serdes.core")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module._orjson is None
    fallback = module.Json()
    assert fallback.backend == "json"
    for value in PARITY_VALUES[:6]:
        assert fallback.serialize(value) == Json(backend="json").serialize(value)
    assert fallback.deserialize(b'{"n":18446744073709551616}') == {"n": 2**64}
    with pytest.raises(ImportError, match="orjson"):
        module.Json(backend="orjson")


PARITY_VALUES: list[Any] = [
    NESTED,
    {"ctrl": "".join(chr(c) for c in range(0x80)), "uni": "\u2028\u2029\ufeff€𝄞"},
    {"floats": [0.1, -0.0, 1.0, 1e16, 1e300, 5e-324, 123456789.123, 2.5e-3]},
    {"ints": [0, -1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1]},
    {"deep": [[[[[{"x": [[]]}]]]]]},
    {1: "int key", "s": (1, 2)},
    {True: "bool key", None: "null key", 1.5: "float key"},
    # The benchmarks' record shape.
    {"id": 12345, "user": "user-00042", "amount": 123.45, "note": "x" * 40},
    {"dup": "x", "nan": float("nan")},
    {"obj": object()},
    {"surrogate": "\udc80"},
]

PARITY_BYTES: list[bytes] = [
    b'{"a":1,"a":2}',
    b' \n\t{"a" : [ 1 , 2 ] }\r\n',
    b'"\\ud83c\\udf89 \\u00e9 \\/"',
    b'"\\ud800"',
    b"123456789012345678901234567890",
    b"-0",
    b"1E400",
    b"1e-400",
    b"0.1e1",
    b"01",
    b"[1,2",
    b'{"a":NaN}',
    b"Infinity",
    b'"\x01"',
    b"\xef\xbb\xbf[]",
    b"true false",
    b"\xc3",
    b"[" * 100 + b"]" * 100,
]


@pytest.mark.parametrize("value", PARITY_VALUES, ids=lambda v: str(v)[:30])
def test_json_backends_agree_on_serialize(value: Any) -> None:
    fast, std = Json(backend="orjson"), Json(backend="json")
    outcomes = []
    for serde in (fast, std):
        try:
            outcomes.append(serde.serialize(value))
        except SerdeError as exc:
            outcomes.append(str(exc))
    fast_out, std_out = outcomes
    if isinstance(fast_out, str) or isinstance(std_out, str):
        assert fast_out == std_out  # same error message, not just both failing
        return
    # Floats in exponent form may be spelled differently (1e-07 vs 1e-7); values must not.
    assert json.loads(fast_out) == json.loads(std_out)
    assert fast.deserialize(std_out) == std.deserialize(fast_out)


def test_json_backends_differ_only_in_float_exponent_spelling() -> None:
    fast, std = Json(backend="orjson"), Json(backend="json")
    values = [1e16, 1.5e-7, -2.5e300]
    assert std.serialize(values) == b"[1e+16,1.5e-07,-2.5e+300]"
    # orjson's spelling varies by version (1e16 or 1e+16); with the exponent written
    # canonically (no "+", no leading zeros) both backends give the same bytes.
    canonical = re.compile(rb"e\+?(-?)0*(\d)")
    fast_out, std_out = fast.serialize(values), std.serialize(values)
    assert isinstance(fast_out, bytes) and isinstance(std_out, bytes)
    assert canonical.sub(rb"e\1\2", fast_out) == canonical.sub(rb"e\1\2", std_out)
    assert fast.deserialize(b"[1.5e-07]") == std.deserialize(b"[1.5e-7]") == [1.5e-7]


def test_json_backends_agree_on_bytes_for_plain_values() -> None:
    fast, std = Json(backend="orjson"), Json(backend="json")
    for value in ROUND_TRIP_VALUES + PARITY_VALUES[:2] + PARITY_VALUES[3:8]:
        assert fast.serialize(value) == std.serialize(value), value


@pytest.mark.parametrize("data", PARITY_BYTES, ids=lambda b: repr(b)[:30])
def test_json_backends_agree_on_deserialize(data: bytes) -> None:
    outcomes = []
    for serde in (Json(backend="orjson"), Json(backend="json")):
        try:
            value = serde.deserialize(data)
            outcomes.append(("ok", value, type(value)))
        except SerdeError as exc:
            outcomes.append(("error", str(exc), None))
    assert outcomes[0] == outcomes[1]


# ----------------------------------------------------------------------------------------- Avro


@pytest.mark.parametrize("value", [ORDER, ORDER_WITH_NOTE])
def test_avro_record_round_trip(value: dict[str, Any]) -> None:
    serde = Avro(ORDER_V1)
    data = serde.serialize(value)
    assert isinstance(data, bytes)
    assert serde.deserialize(data) == value


def test_avro_matches_fastavro_encoding_and_accepts_json_schema() -> None:
    expected = io.BytesIO()
    fastavro.schemaless_writer(expected, fastavro.parse_schema(ORDER_V1), ORDER_WITH_NOTE)
    from_json = Avro(json.dumps(ORDER_V1))
    assert from_json.name == "Avro(schema=com.acme.Order)"
    assert from_json.serialize(ORDER_WITH_NOTE) == expected.getvalue()
    assert Avro(ORDER_V1).deserialize(expected.getvalue()) == ORDER_WITH_NOTE


def test_avro_missing_optional_field_takes_default() -> None:
    serde = Avro(ORDER_V1)
    without_note = {k: v for k, v in ORDER.items() if k != "note"}
    assert serde.deserialize(serde.serialize(without_note)) == ORDER


def test_avro_primitive_and_union_schemas() -> None:
    assert Avro("string").deserialize(Avro("string").serialize("héllo")) == "héllo"
    assert Avro('"long"').serialize(1) == b"\x02"
    optional = Avro(["null", "long"])
    assert optional.deserialize(optional.serialize(-5)) == -5


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        ({**ORDER, "id": 5.7}, ["com.acme.Order.id is 5.7 (float), expected long"]),
        ({**ORDER, "id": True}, ["com.acme.Order.id is True (bool), expected long"]),
        ({**ORDER, "amount": "12.5"}, ["com.acme.Order.amount", "expected double"]),
        ({**ORDER, "note": 3}, ["com.acme.Order.note is 3 (int), expected string"]),
        ({k: v for k, v in ORDER.items() if k != "customer"}, ["customer is None"]),
        ([1, 2], ["the value is [1, 2] (list), expected com.acme.Order"]),
        ({**ORDER, "id": 2**70}, ["com.acme.Order.id"]),
    ],
)
def test_avro_invalid_record(value: Any, fragments: list[str]) -> None:
    raises_serde_error("Avro(schema=com.acme.Order)", "rejected a value", *fragments)(
        lambda: Avro(ORDER_V1).serialize(value)
    )


def test_avro_without_validation_still_reports_write_errors() -> None:
    serde = Avro(ORDER_V1, validate=False)
    assert serde.deserialize(serde.serialize(ORDER)) == ORDER
    raises_serde_error("Avro(schema=com.acme.Order)", "could not encode", "customer")(
        lambda: serde.serialize({**ORDER, "customer": 5})
    )


def test_avro_bad_bytes() -> None:
    serde = Avro(ORDER_V1)
    good = serde.serialize(ORDER)
    assert good is not None
    name = "Avro(schema=com.acme.Order)"
    raises_serde_error(name, "could not decode 0 bytes", "truncated")(
        lambda: serde.deserialize(b"")
    )
    raises_serde_error(name, f"could not decode {len(good) - 3} bytes", "truncated")(
        lambda: serde.deserialize(good[:-3])
    )
    raises_serde_error(name, "1 unread byte after the record")(
        lambda: serde.deserialize(good + b"\x00")
    )
    raises_serde_error(name, "could not decode 20 bytes")(lambda: serde.deserialize(b"\xff" * 20))
    raises_serde_error(name, "type str")(lambda: serde.deserialize("text"))  # type: ignore[arg-type]


def test_avro_rejects_bad_schema() -> None:
    with pytest.raises(ValueError, match="invalid Avro schema"):
        Avro({"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]})
    with pytest.raises(ValueError, match="invalid Avro schema"):
        Avro("not-a-type")


# -------------------------------------------------------------------------------- ConfluentAvro


def body(schema: dict[str, Any], value: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), value)
    return buf.getvalue()


def framed(schema_id: int, schema: dict[str, Any], value: Any) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + body(schema, value)


def test_confluent_wire_format_layout() -> None:
    serde = ConfluentAvro(ORDER_V1, schema_id=0x01020304)
    data = serde.serialize(ORDER_WITH_NOTE)
    assert data is not None
    assert data[0] == 0x00  # magic byte
    assert data[1] == 0x01 and data[2] == 0x02 and data[3] == 0x03 and data[4] == 0x04
    assert data[5:] == body(ORDER_V1, ORDER_WITH_NOTE)
    small_id = ConfluentAvro(ORDER_V1, schema_id=7).serialize(ORDER)
    assert small_id is not None and small_id[:5] == b"\x00\x00\x00\x00\x07"


def test_confluent_round_trip_without_lookup() -> None:
    serde = ConfluentAvro(ORDER_V1, schema_id=7)
    for value in (ORDER, ORDER_WITH_NOTE):
        assert serde.deserialize(serde.serialize(value)) == value


def test_confluent_lookup_is_called_once_per_schema_id() -> None:
    calls: list[int] = []

    def lookup(schema_id: int) -> str:
        calls.append(schema_id)
        return json.dumps(ORDER_V1)

    serde = ConfluentAvro(lookup=lookup)
    records = [framed(42, ORDER_V1, {**ORDER, "id": i}) for i in range(200)]
    assert [serde.deserialize(r)["id"] for r in records] == list(range(200))
    assert calls == [42]
    serde.deserialize(framed(43, ORDER_V1, ORDER))
    assert calls == [42, 43]


def test_confluent_own_schema_id_needs_no_lookup_call() -> None:
    calls: list[int] = []

    def lookup(schema_id: int) -> dict[str, Any]:
        calls.append(schema_id)
        return ORDER_V1

    serde = ConfluentAvro(ORDER_V1, 7, lookup=lookup)
    assert serde.deserialize(framed(7, ORDER_V1, ORDER)) == ORDER
    assert calls == []


def test_confluent_lookup_accepts_registry_schema_objects() -> None:
    class RegistrySchema:
        schema_str = json.dumps(ORDER_V1)

    serde = ConfluentAvro(lookup=lambda schema_id: RegistrySchema())
    assert serde.deserialize(framed(9, ORDER_V1, ORDER)) == ORDER


def test_confluent_schema_evolution_through_reader_schema() -> None:
    registry = {1: ORDER_V1, 2: json.dumps(ORDER_V2)}
    consumer = ConfluentAvro(ORDER_V2, schema_id=2, lookup=registry.__getitem__)
    # A v1 record (no currency) resolves into the v2 shape with the default filled in.
    assert consumer.deserialize(framed(1, ORDER_V1, ORDER)) == {**ORDER, "currency": "EUR"}
    # A v2 record written by a v2 producer reads as is.
    producer = ConfluentAvro(ORDER_V2, schema_id=2)
    v2_order = {**ORDER, "currency": "USD"}
    assert consumer.deserialize(producer.serialize(v2_order)) == v2_order
    # Without a reader schema the writer's shape is returned.
    assert ConfluentAvro(lookup=registry.__getitem__).deserialize(framed(1, ORDER_V1, ORDER)) == (
        ORDER
    )


def test_confluent_incompatible_reader_schema_names_the_id() -> None:
    reader = {**ORDER_V1, "fields": [*ORDER_V1["fields"], {"name": "must", "type": "string"}]}
    serde = ConfluentAvro(reader, lookup=lambda schema_id: ORDER_V1)
    raises_serde_error("ConfluentAvro(schema=com.acme.Order)", "schema id 3", "must")(
        lambda: serde.deserialize(framed(3, ORDER_V1, ORDER))
    )


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        (b"", ["could not decode 0 bytes", "at least 5 bytes"]),
        (b"\x00\x00\x00\x07", ["could not decode 4 bytes", "at least 5 bytes"]),
        (b"\x01\x00\x00\x00\x07\x02", ["magic byte is 1, expected 0"]),
        (b'{"json": true}', ["magic byte is 123, expected 0"]),
        (b"\x00\x00\x00\x00\x07", ["with schema id 7", "truncated"]),
        (b"\x00\x00\x00\x00\x07\xff\xff\xff\xff\xff\xff", ["with schema id 7"]),
    ],
)
def test_confluent_bad_framing(data: bytes, fragments: list[str]) -> None:
    serde = ConfluentAvro(ORDER_V1, schema_id=7)
    raises_serde_error("ConfluentAvro(schema=com.acme.Order, schema_id=7)", *fragments)(
        lambda: serde.deserialize(data)
    )


def test_confluent_trailing_bytes_name_the_id() -> None:
    serde = ConfluentAvro(ORDER_V1, schema_id=7)
    data = framed(7, ORDER_V1, ORDER) + b"\x00\x00"
    raises_serde_error(serde.name, "with schema id 7", "2 unread bytes")(
        lambda: serde.deserialize(data)
    )


def test_confluent_unknown_id_without_lookup() -> None:
    serde = ConfluentAvro(ORDER_V1, schema_id=7)
    raises_serde_error(serde.name, "schema id 8", "no lookup", "schema id 7")(
        lambda: serde.deserialize(framed(8, ORDER_V1, ORDER))
    )


def test_confluent_lookup_failures_name_the_id_and_are_retried() -> None:
    attempts: list[int] = []

    def flaky(schema_id: int) -> dict[str, Any]:
        attempts.append(schema_id)
        if len(attempts) == 1:
            raise ConnectionError("registry unavailable")
        return ORDER_V1

    serde = ConfluentAvro(lookup=flaky)
    data = framed(11, ORDER_V1, ORDER)
    raises_serde_error("ConfluentAvro", "schema id 11", "ConnectionError: registry unavailable")(
        lambda: serde.deserialize(data)
    )
    assert serde.deserialize(data) == ORDER
    assert attempts == [11, 11]


def test_confluent_lookup_returning_none_or_garbage() -> None:
    none_serde = ConfluentAvro(lookup=lambda schema_id: None)
    raises_serde_error("ConfluentAvro", "no schema for schema id 5", "returned None")(
        lambda: none_serde.deserialize(framed(5, ORDER_V1, ORDER))
    )
    missing = ConfluentAvro(lookup={}.__getitem__)
    raises_serde_error("ConfluentAvro", "could not look up schema id 6", "KeyError")(
        lambda: missing.deserialize(framed(6, ORDER_V1, ORDER))
    )
    garbage = ConfluentAvro(lookup=lambda schema_id: {"type": "record"})
    raises_serde_error("ConfluentAvro", "bad schema for schema id 4")(
        lambda: garbage.deserialize(framed(4, ORDER_V1, ORDER))
    )


def test_confluent_serialize_errors() -> None:
    reader_only = ConfluentAvro(ORDER_V1, lookup=lambda schema_id: ORDER_V1)
    raises_serde_error("ConfluentAvro(schema=com.acme.Order)", "needs both schema and schema_id")(
        lambda: reader_only.serialize(ORDER)
    )
    serde = ConfluentAvro(ORDER_V1, schema_id=7)
    raises_serde_error(serde.name, "rejected a value", "com.acme.Order.id is 1.5 (float)")(
        lambda: serde.serialize({**ORDER, "id": 1.5})
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "needs schema and schema_id, a lookup, or both"),
        ({"schema": ORDER_V1}, "needs schema and schema_id"),
        ({"schema_id": 3, "lookup": str}, "schema_id needs the schema"),
        ({"schema": ORDER_V1, "schema_id": -1}, "out of range"),
        ({"schema": ORDER_V1, "schema_id": 2**31}, "out of range"),
        ({"schema": ORDER_V1, "schema_id": "7"}, "must be an int"),
        ({"schema": {"type": "nope"}, "schema_id": 1}, "invalid Avro schema"),
    ],
)
def test_confluent_constructor_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ConfluentAvro(**kwargs)
