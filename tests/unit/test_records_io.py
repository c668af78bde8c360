"""Records as JSON lines (eokafka produce / consume): parsing, serdes, and the way back."""

from __future__ import annotations

import json

import pytest

from eokafka import serdes
from eokafka.records_io import (
    RecordFormatError,
    codec,
    parse_headers,
    parse_lines,
    record_line,
)

JSON, STRING, B64 = codec("json"), codec("string"), codec("base64")


def _error(lines: list[str], key: str = "string", value: str = "json") -> str:
    with pytest.raises(RecordFormatError) as raised:
        list(parse_lines(lines, codec(key), codec(value)))
    return str(raised.value)


def test_lines_become_records() -> None:
    lines = [
        '{"key": "alice", "value": {"qty": 1}}',
        "",
        '{"value": null, "key": "bob", "partition": 2, "timestamp": 1767225600000,'
        ' "headers": {"src": "cli", "tag": ["a", "b"], "none": null}}',
    ]
    extra = parse_headers(["run=7"])
    first, second = parse_lines(lines, STRING, JSON, "in.jsonl", extra)
    assert (first.line, first.key, first.value) == (1, b"alice", b'{"qty":1}')
    assert first.headers == [("run", b"7")] and first.partition is None
    assert (second.line, second.key, second.value, second.partition) == (3, b"bob", None, 2)
    assert second.timestamp == 1767225600000
    assert second.headers == [
        ("src", b"cli"), ("tag", b"a"), ("tag", b"b"), ("none", None), ("run", b"7")
    ]


def test_bad_lines_are_named() -> None:
    assert _error(["{}", "nope"]).startswith("stdin line 1: expected an object with \"value\"")
    assert _error(['{"value": 1}', "nope"]).startswith("stdin line 2: not JSON")
    assert "unknown field(s) partiton" in _error(['{"value": 1, "partiton": 1}'])
    assert "partition must be an integer >= 0, not -1" in _error(['{"value": 1, "partition": -1}'])
    message = _error(['{"key": 7, "value": 1}'])
    assert "stdin line 1: the key does not fit --key-serde string: it takes a JSON" in message
    assert "not base64" in _error(['{"value": "%%%"}'], value="base64")
    assert "headers must be an object of strings" in _error(['{"value": 1, "headers": {"a": 1}}'])
    with pytest.raises(RecordFormatError, match="--header 'x': expected name=value"):
        parse_headers(["x"])


def test_a_consumed_record_is_a_line_produce_reads_back() -> None:
    headers = [("src", b"cli"), ("tag", b"a"), ("tag", b"b"), ("bin", b"\xff")]
    line = record_line(b"alice", b'{"qty":1}', headers, 3, 17, 1767225600000, (STRING, JSON), "x")
    item = json.loads(line)
    assert item == {
        "key": "alice",
        "value": {"qty": 1},
        "partition": 3,
        "offset": 17,
        "timestamp": 1767225600000,
        "headers": {"src": "cli", "tag": ["a", "b"], "bin": "\\xff"},
    }
    [again] = parse_lines([line], STRING, JSON)  # offset is ignored, partition kept
    assert (again.key, again.value, again.partition) == (b"alice", b'{"qty":1}', 3)


def test_bytes_that_are_not_the_serde_name_the_record_and_the_way_out() -> None:
    with pytest.raises(RecordFormatError) as raised:
        record_line(None, b"\x00\x01", None, 0, 5, 0, (STRING, JSON), "t[0]@5")
    assert str(raised.value).startswith("t[0]@5: its value is not json")
    assert "read it with --value-serde string or base64" in str(raised.value)
    line = record_line(None, b"\x00\x01", None, 0, 5, 0, (STRING, B64), "t[0]@5")
    [back] = parse_lines([line], STRING, B64)
    assert back.value == b"\x00\x01" and back.key is None


def test_the_app_serde_carries_the_apps_encoding() -> None:
    avro = serdes.Avro(
        {"type": "record", "name": "Order", "fields": [{"name": "qty", "type": "int"}]}
    )
    app = codec("app", avro)
    [record] = parse_lines(['{"value": {"qty": 3}}'], STRING, app)
    assert record.value == avro.serialize({"qty": 3})
    line = record_line(None, record.value, None, 0, 0, 0, (STRING, app), "x")
    assert json.loads(line)["value"] == {"qty": 3}
    with pytest.raises(RecordFormatError, match="needs --app module:app"):
        codec("app")
    with pytest.raises(RecordFormatError, match="choose one of json, string, base64, app"):
        codec("xml")
