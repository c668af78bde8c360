"""Compare the records of a source with those of a destination, by an id field.

Both sides are :class:`~eokafka.verify.records.Read` records. Those with an id are matched
by it; those without one can't be checked, so they are counted and named on each side and
make the report fail unless the caller accepts them (``allow_unkeyed``). Records are also
grouped into key ranges (a stable hash of the id, modulo ``buckets``) with a count and an
order-independent checksum per range on each side, which localises a difference without
listing every record.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from eokafka.verify.records import CsvText, Loc, Read, Side, Value, csv_matches

SHOWN = 20  # records listed per kind of difference


def _bucket(id_: str, buckets: int) -> int:
    return int.from_bytes(hashlib.blake2b(id_.encode(), digest_size=4).digest(), "big") % buckets


def _digest(id_: str, values: tuple[Value, ...]) -> int:
    # "s" + text or "n": null and "" differ in the checksum as in the comparison.
    parts = [id_, *("n" if v is None else "s" + v for v in values)]
    text = "\x1f".join(parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def _resolved(values: tuple[Value, ...], expected: tuple[Value, ...] | None) -> tuple[Value, ...]:
    """A destination's CSV fields as the source's values where they match them."""
    if expected is None or not any(type(v) is CsvText for v in values):
        return values
    return tuple(
        e if type(v) is CsvText and csv_matches(v, e) else v
        for v, e in zip(values, expected, strict=True)
    )


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
    """What ``eokafka verify`` found; ``as_dict`` is its ``--json`` form."""

    source: str
    destination: str
    id_field: str
    fields: list[str]
    allow_unkeyed: bool = False
    source_count: int = 0
    destination_count: int = 0
    missing_count: int = 0
    duplicated_count: int = 0
    differing_count: int = 0
    extra_count: int = 0
    source_duplicated_count: int = 0
    source_unreadable_count: int = 0
    destination_unreadable_count: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    duplicated: list[dict[str, Any]] = field(default_factory=list)
    differing: list[dict[str, Any]] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)
    source_duplicated: list[dict[str, Any]] = field(default_factory=list)
    source_unreadable: list[dict[str, Any]] = field(default_factory=list)
    destination_unreadable: list[dict[str, Any]] = field(default_factory=list)
    ranges: list[Range] = field(default_factory=list)
    open_transactions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unreadable_count(self) -> int:
        return self.source_unreadable_count + self.destination_unreadable_count

    @property
    def ok(self) -> bool:
        return not (
            self.missing_count
            or self.duplicated_count
            or self.differing_count
            or self.extra_count
            or self.source_duplicated_count
            or (self.unreadable_count and not self.allow_unkeyed)
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
            f"source:      {self.source}: {self.source_count} records with an id, "
            f"{self.source_unreadable_count} without",
            f"destination: {self.destination}: {self.destination_count} records with an id, "
            f"{self.destination_unreadable_count} without",
            f"compared by {self.id_field}"
            + (f" and {', '.join(self.fields)}" if self.fields else ""),
        ]
        for what, count, shown in [
            ("missing from the destination", self.missing_count,
             [f"{d['id']} ({d['where']})" for d in self.missing]),
            ("duplicated in the destination", self.duplicated_count,
             [f"{d['id']} x{d['count']} ({', '.join(d['where'])})" for d in self.duplicated]),
            ("differing", self.differing_count,
             [f"{d['id']} {d['field']}: {d['source']!r} != {d['destination']!r} "
              f"({d['source_where']} vs {d['destination_where']})" for d in self.differing]),
            ("in the destination only", self.extra_count,
             [f"{d['id']} ({d['where']})" for d in self.extra]),
            ("ids repeated in the source", self.source_duplicated_count,
             [f"{d['id']} ({d['where']})" for d in self.source_duplicated]),
            ("source records without a readable id", self.source_unreadable_count,
             [f"{d['where']}: {d['problem']}" for d in self.source_unreadable]),
            ("destination records without a readable id", self.destination_unreadable_count,
             [f"{d['where']}: {d['problem']}" for d in self.destination_unreadable]),
        ]:
            if count:
                more = f" (first {len(shown)})" if count > len(shown) else ""
                lines.append(f"{what}: {count}{more}:" + "".join(f"\n  {s}" for s in shown))
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
        lines.append(self._verdict())
        return "\n".join(lines)

    def _verdict(self) -> str:
        if not self.ok:
            if self.unreadable_count and not self.allow_unkeyed:
                return (
                    "DIFFERENCES FOUND (records without a readable id can't be checked: "
                    "fix them, or pass --allow-unkeyed to accept them unchecked)"
                )
            return "DIFFERENCES FOUND"
        if self.unreadable_count:
            return (
                f"OK: every record with an id exactly once; {self.unreadable_count} without "
                "a readable id not checked (--allow-unkeyed)"
            )
        return "OK: every record exactly once"


def _unreadable(found: list[dict[str, Any]], side: Side, read: Read) -> None:
    if len(found) < SHOWN:
        found.append({"where": side.where(read.loc), "problem": read.problem})


def compare(report: Report, source: Side, destination: Side, buckets: int = 16) -> Report:
    """Fill ``report`` with the differences between the two sides."""
    ranges = [Range(b) for b in range(buckets)]
    sums = [[0, 0] for _ in range(buckets)]
    src: dict[str, tuple[tuple[Value, ...], Loc]] = {}
    for read in source.reads:
        if read.id is None:
            report.source_unreadable_count += 1
            _unreadable(report.source_unreadable, source, read)
            continue
        report.source_count += 1
        id_ = read.id
        if id_ in src:
            report.source_duplicated_count += 1
            if len(report.source_duplicated) < SHOWN:
                report.source_duplicated.append({"id": id_, "where": source.where(read.loc)})
        src[id_] = (read.values, read.loc)
        b = _bucket(id_, buckets)
        ranges[b].source_count += 1
        sums[b][0] = (sums[b][0] + _digest(id_, read.values)) % 2**64
    seen: dict[str, Loc] = {}  # where each id was first found
    again: dict[str, list[Loc]] = {}  # every place of the ids found more than once
    for read in destination.reads:
        if read.id is None:
            report.destination_unreadable_count += 1
            _unreadable(report.destination_unreadable, destination, read)
            continue
        report.destination_count += 1
        id_ = read.id
        expected = src.get(id_)
        values = _resolved(read.values, None if expected is None else expected[0])
        first = id_ not in seen
        if first:
            seen[id_] = read.loc
        else:
            again.setdefault(id_, [seen[id_]]).append(read.loc)
        b = _bucket(id_, buckets)
        ranges[b].destination_count += 1
        sums[b][1] = (sums[b][1] + _digest(id_, values)) % 2**64
        if expected is None:
            report.extra_count += 1
            if len(report.extra) < SHOWN:
                report.extra.append({"id": id_, "where": destination.where(read.loc)})
        elif first and expected[0] != values:
            report.differing_count += 1
            if len(report.differing) < SHOWN:
                f, s, d = next(
                    (f, s, d)
                    for f, s, d in zip(report.fields, expected[0], values, strict=True)
                    if s != d
                )
                report.differing.append({
                    "id": id_, "field": f, "source": s, "destination": d,
                    "source_where": source.where(expected[1]),
                    "destination_where": destination.where(read.loc),
                })
    report.duplicated_count = len(again)
    for id_, locs in list(again.items())[:SHOWN]:
        report.duplicated.append(
            {"id": id_, "count": len(locs), "where": [destination.where(x) for x in locs]}
        )
    for id_, (_, loc) in src.items():
        if id_ not in seen:
            report.missing_count += 1
            if len(report.missing) < SHOWN:
                report.missing.append({"id": id_, "where": source.where(loc)})
    for r, (s, d) in zip(ranges, sums, strict=True):
        r.source_checksum, r.destination_checksum = f"{s:016x}", f"{d:016x}"
    report.ranges = ranges
    return report
