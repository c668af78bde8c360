"""The matching behind ``eokafka verify``: canonical values, differences, key-range checksums."""

from __future__ import annotations

import decimal

from eokafka.verify.compare import Report, canonical, compare, item


def _items(values: list[dict]) -> list:
    return [item(v, "id", ["amount"]) for v in values]


def test_canonical_agrees_across_json_postgres_and_csv() -> None:
    assert canonical(79) == canonical(79.0) == canonical(decimal.Decimal("79.00")) == "79"
    assert canonical("79") == "79"
    assert canonical(None) == "" and canonical(True) == "true"
    assert canonical({"b": 1, "a": [1]}) == '{"a":[1],"b":1}'


def test_compare_finds_each_kind_of_difference() -> None:
    source = _items([{"id": n, "amount": n} for n in range(100)])
    dest = _items(
        [{"id": n, "amount": n} for n in range(100) if n not in (3, 4)]
        + [{"id": 5, "amount": 5}, {"id": 4, "amount": 400}, {"id": 1000, "amount": 1}]
        + [{"no_id": 1}]
    )
    report = compare(Report("s", "d", "id", ["amount"]), source, dest, buckets=8)
    assert not report.ok
    assert report.missing == ["3"]
    assert report.duplicated == [{"id": "5", "count": 2}]
    assert report.differing == [
        {"id": "4", "field": "amount", "source": "4", "destination": "400"}
    ]
    assert report.extra == ["1000"] and report.unreadable_count == 1
    assert sum(r.source_count for r in report.ranges) == 100
    assert "DIFFERENCES FOUND" in report.summary()


def test_identical_sides_match_in_every_range_whatever_the_order() -> None:
    values = [{"id": n, "amount": n % 7} for n in range(300)]
    report = compare(
        Report("s", "d", "id", ["amount"]), _items(values), _items(values[::-1]), buckets=16
    )
    assert report.ok and all(r.ok for r in report.ranges)
    assert report.as_dict()["ok"] is True
