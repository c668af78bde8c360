"""Compare the records of a source with those of a destination, by an id field.

Both sides are reduced to ``(id, values)`` pairs, values being the chosen fields in a
canonical text form, so a Kafka JSON value, a PostgreSQL row and a CSV line compare alike.
Records are also grouped into key ranges (a stable hash of the id, modulo ``buckets``) with
a count and an order-independent checksum per range on each side, which localises a
difference without listing every record.
"""

from __future__ import annotations

import decimal
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

Item = tuple[str, tuple[str, ...]]  # id, the compared fields' values
_SHOWN = 20


def canonical(value: Any) -> str:
    """One text form for a value read from JSON, PostgreSQL or CSV."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, decimal.Decimal | float) and value == int(value):
        return str(int(value))
    if isinstance(value, str | int | float | decimal.Decimal):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def item(record: dict[str, Any], id_field: str, fields: Sequence[str]) -> Item | None:
    """The comparable form of one record; None if it has no id."""
    if not isinstance(record, dict) or record.get(id_field) is None:
        return None
    return canonical(record[id_field]), tuple(canonical(record.get(f)) for f in fields)


def _bucket(id_: str, buckets: int) -> int:
    return int.from_bytes(hashlib.blake2b(id_.encode(), digest_size=4).digest(), "big") % buckets


def _digest(it: Item) -> int:
    text = "\x1f".join((it[0], *it[1])).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


@dataclass
class Range:
    """One key range: how many records each side has, and a checksum of them (sum mod 2^64)."""

    bucket: int
    source_count: int = 0
    destination_count: int = 0
    source_checksum: str = "0"
    destination_checksum: str = "0"

    @property
    def ok(self) -> bool:
        return (
            self.source_count == self.destination_count
            and self.source_checksum == self.destination_checksum
        )


@dataclass
class Report:
    source: str
    destination: str
    id_field: str
    fields: list[str]
    source_count: int = 0
    destination_count: int = 0
    missing_count: int = 0
    duplicated_count: int = 0
    differing_count: int = 0
    extra_count: int = 0
    source_duplicated_count: int = 0
    unreadable_count: int = 0
    missing: list[str] = field(default_factory=list)
    duplicated: list[dict[str, Any]] = field(default_factory=list)
    differing: list[dict[str, Any]] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    ranges: list[Range] = field(default_factory=list)
    open_transactions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.missing_count
            or self.duplicated_count
            or self.differing_count
            or self.extra_count
            or self.source_duplicated_count
            or self.unreadable_count
            or self.open_transactions
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        for r, d in zip(self.ranges, out["ranges"], strict=True):
            d["ok"] = r.ok
        return out

    def summary(self) -> str:
        lines = [
            f"source:      {self.source}: {self.source_count} records",
            f"destination: {self.destination}: {self.destination_count} records",
            f"compared by {self.id_field}"
            + (f" and {', '.join(self.fields)}" if self.fields else ""),
        ]
        for what, count, shown in [
            ("missing from the destination", self.missing_count, self.missing),
            ("duplicated in the destination", self.duplicated_count,
             [f"{d['id']} x{d['count']}" for d in self.duplicated]),
            ("differing", self.differing_count,
             [f"{d['id']} {d['field']}: {d['source']!r} != {d['destination']!r}"
              for d in self.differing]),
            ("in the destination only", self.extra_count, self.extra),
        ]:
            if count:
                more = f" (first {len(shown)})" if count > len(shown) else ""
                lines.append(f"{what}: {count}{more}: {', '.join(map(str, shown))}")
        if self.source_duplicated_count:
            lines.append(f"ids repeated in the source: {self.source_duplicated_count}")
        if self.unreadable_count:
            lines.append(f"destination records without a readable id: {self.unreadable_count}")
        bad = [r for r in self.ranges if not r.ok]
        lines.append(
            f"key ranges: {len(self.ranges) - len(bad)} of {len(self.ranges)} match"
            + "".join(
                f"\n  range {r.bucket}: {r.source_count} vs {r.destination_count} records, "
                f"checksum {r.source_checksum} vs {r.destination_checksum}"
                for r in bad
            )
        )
        for t in self.open_transactions:
            lines.append(
                f"open transaction on {t['topic']}[{t['partition']}]: last stable offset "
                f"{t['last_stable_offset']} < high watermark {t['high_watermark']}"
            )
        lines.append("OK: every record exactly once" if self.ok else "DIFFERENCES FOUND")
        return "\n".join(lines)


def compare(
    report: Report,
    source: Iterable[Item | None],
    destination: Iterable[Item | None],
    buckets: int = 16,
) -> Report:
    """Fill ``report`` with the differences between the two sides."""
    ranges = [Range(b) for b in range(buckets)]
    sums = [[0, 0] for _ in range(buckets)]
    src: dict[str, tuple[str, ...]] = {}
    src_dupes = 0
    for it in source:
        if it is None:
            continue
        report.source_count += 1
        if it[0] in src:
            src_dupes += 1
        src[it[0]] = it[1]
        b = _bucket(it[0], buckets)
        ranges[b].source_count += 1
        sums[b][0] = (sums[b][0] + _digest(it)) % 2**64
    seen: Counter[str] = Counter()
    for it in destination:
        if it is None:
            report.unreadable_count += 1
            continue
        report.destination_count += 1
        id_, values = it
        seen[id_] += 1
        b = _bucket(id_, buckets)
        ranges[b].destination_count += 1
        sums[b][1] = (sums[b][1] + _digest(it)) % 2**64
        expected = src.get(id_)
        if expected is None:
            report.extra_count += 1
            if len(report.extra) < _SHOWN:
                report.extra.append(id_)
        elif expected != values and seen[id_] == 1:
            report.differing_count += 1
            if len(report.differing) < _SHOWN:
                f, s, d = next(
                    (f, s, d)
                    for f, s, d in zip(report.fields, expected, values, strict=True)
                    if s != d
                )
                report.differing.append({"id": id_, "field": f, "source": s, "destination": d})
    report.source_duplicated_count = src_dupes
    for id_, count in seen.items():
        if count > 1:
            report.duplicated_count += 1
            if len(report.duplicated) < _SHOWN:
                report.duplicated.append({"id": id_, "count": count})
    for id_ in src:
        if id_ not in seen:
            report.missing_count += 1
            if len(report.missing) < _SHOWN:
                report.missing.append(id_)
    for r, (s, d) in zip(ranges, sums, strict=True):
        r.source_checksum, r.destination_checksum = f"{s:016x}", f"{d:016x}"
    report.ranges = ranges
    return report
