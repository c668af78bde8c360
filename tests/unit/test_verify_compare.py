"""The matching behind ``eokafka verify``: canonical values, differences, unreadable records,
key-range checksums."""

from __future__ import annotations

import decimal
import json
from typing import Any

from eokafka.verify.compare import Report, compare
from eokafka.verify.records import CsvText, Side, canonical, from_json, from_mapping


def _side(name: str, values: list[Any]) -> Side:
    """A side of JSON records (dicts are encoded; bytes and None are taken as they are)."""
    reads = [
        from_json((0, n), v if v is None or isinstance(v, bytes) else json.dumps(v).encode(),
                  "id", ["amount"])
        for n, v in enumerate(values)
    ]
    return Side(name, reads, lambda loc: f"{name}[{loc[0]}]@{loc[1]}")


def _compare(source: list[Any], dest: list[Any], allow_unkeyed: bool = False) -> Report:
    report = Report("s", "d", "id", ["amount"], allow_unkeyed)
    return compare(report, _side("s", source), _side("d", dest), buckets=8)


def test_canonical_agrees_across_json_postgres_and_csv_but_keeps_null_apart() -> None:
    assert canonical(79) == canonical(79.0) == canonical(decimal.Decimal("79.00")) == "79"
    assert canonical(79.5) == canonical(decimal.Decimal("79.50")) == "79.5"
    assert canonical(1e-7) == canonical(decimal.Decimal("0.0000001")) == "0.0000001"
    assert canonical("79") == "79" and canonical(True) == "true"
    assert canonical({"b": 1, "a": [1]}) == '{"a":[1],"b":1}'
    assert canonical(None) is None
    falsy = [canonical(v) for v in (None, "", 0, False, [], {})]
    assert len(set(falsy)) == len(falsy), falsy
    assert canonical(float("nan")) == "nan" and canonical(decimal.Decimal("Infinity"))


def test_null_and_empty_string_differ_in_values_and_checksums() -> None:
    report = _compare([{"id": 1, "amount": None}], [{"id": 1, "amount": ""}])
    assert not report.ok
    assert report.differing == [{
        "id": "1", "field": "amount", "source": None, "destination": "",
        "source_where": "s[0]@0", "destination_where": "d[0]@0",
    }]
    assert not all(r.ok for r in report.ranges)


def test_compare_finds_each_kind_of_difference_with_its_place() -> None:
    source = [{"id": n, "amount": n} for n in range(100)]
    dest = (
        [{"id": n, "amount": n} for n in range(100) if n not in (3, 4)]
        + [{"id": 5, "amount": 5}, {"id": 4, "amount": 400}, {"id": 1000, "amount": 1}]
    )
    report = _compare(source, dest)
    assert not report.ok
    assert report.missing == [{"id": "3", "where": "s[0]@3"}]
    assert report.duplicated == [{"id": "5", "count": 2, "where": ["d[0]@3", "d[0]@98"]}]
    assert report.differing == [{
        "id": "4", "field": "amount", "source": "4", "destination": "400",
        "source_where": "s[0]@4", "destination_where": "d[0]@99",
    }]
    assert report.extra == [{"id": "1000", "where": "d[0]@100"}]
    assert sum(r.source_count for r in report.ranges) == 100
    assert "DIFFERENCES FOUND" in report.summary()


def test_records_without_a_readable_id_are_counted_named_and_fail() -> None:
    """The issue's case: 2 of 4 source records lost, both without a readable id."""
    source = [{"id": 1, "amount": 1}, {"id": None, "amount": 2}, b"{not json", {"amount": 3},
              None, b"\xff\xfe", [1, 2]]
    dest = [{"id": 1, "amount": 1}, b"", {"id": None}]
    report = _compare(source, dest)
    assert not report.ok
    assert report.source_count == 1 and report.source_unreadable_count == 6
    assert [(u["where"], u["problem"].split(" (")[0]) for u in report.source_unreadable] == [
        ("s[0]@1", "'id' is null"),
        ("s[0]@2", "not JSON"),
        ("s[0]@3", "no 'id' field"),
        ("s[0]@4", "a tombstone"),
        ("s[0]@5", "not UTF-8"),
        ("s[0]@6", "a JSON list, not an object"),
    ]
    assert report.destination_unreadable_count == 2
    assert [u["where"] for u in report.destination_unreadable] == ["d[0]@1", "d[0]@2"]
    summary = report.summary()
    assert "OK" not in summary.splitlines()[-1] and "--allow-unkeyed" in summary
    assert "s[0]@2: not JSON" in summary


def test_allow_unkeyed_accepts_them_but_still_reports_them() -> None:
    report = _compare([{"id": 1, "amount": 1}, {"amount": 2}], [{"id": 1, "amount": 1}],
                      allow_unkeyed=True)
    assert report.ok and report.source_unreadable_count == 1
    assert report.summary().splitlines()[-1].startswith(
        "OK: every record with an id exactly once; 1 without"
    )
    unreadable = report.as_dict()["source_unreadable"]
    assert unreadable == [{"where": "s[0]@1", "problem": "no 'id' field"}]
    other = _compare([{"id": 1, "amount": 1}, {"amount": 2}], [], allow_unkeyed=True)
    assert not other.ok and other.missing_count == 1  # the keyed ones are still checked


def test_an_empty_csv_field_stands_for_null_or_empty_and_bools_for_their_text() -> None:
    def csv_side(rows: list[dict[str, str]]) -> Side:
        reads = [
            from_mapping((0, n), {k: CsvText(v) for k, v in row.items()}, "id", ["amount"])
            for n, row in enumerate(rows, 2)
        ]
        return Side("f", reads, lambda loc: f"part.csv:{loc[1]}")

    source = [{"id": 1, "amount": None}, {"id": 2, "amount": ""}, {"id": 3, "amount": True},
              {"id": 4, "amount": None}]
    rows = [{"id": "1", "amount": ""}, {"id": "2", "amount": ""}, {"id": "3", "amount": "True"},
            {"id": "4", "amount": "0"}, {"id": "", "amount": "5"}]
    report = compare(Report("s", "f", "id", ["amount"]), _side("s", source), csv_side(rows), 4)
    assert report.differing_count == 1 and report.differing[0]["id"] == "4"
    assert report.destination_unreadable == [{"where": "part.csv:6", "problem": "'id' is empty"}]
    matching = compare(
        Report("s", "f", "id", ["amount"]), _side("s", source[:3]), csv_side(rows[:3]), 4
    )
    assert matching.ok and all(r.ok for r in matching.ranges)


def test_identical_sides_match_in_every_range_whatever_the_order() -> None:
    values = [{"id": n, "amount": n % 7} for n in range(300)]
    report = _compare(values, values[::-1])
    assert report.ok and all(r.ok for r in report.ranges)
    assert report.as_dict()["ok"] is True
    assert report.summary().splitlines()[-1] == "OK: every record exactly once"
