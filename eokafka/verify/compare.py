"""Compare the records of a source with those of a destination, by an id field.

Both sides are :class:`~eokafka.verify.records.Read` records. Those with an id are matched
by it; those without one can't be checked, so they are counted and named on each side and
make the report fail unless the caller accepts them (``allow_unkeyed``). Records are also
grouped into key ranges (a stable hash of the id, modulo ``buckets``) with a count and an
order-independent checksum per range on each side, which localises a difference without
listing every record.

Source records a running sink has not committed yet (``in_flight``) are left out, and so
are the destination copies of their ids. The report lists the first differences of each
kind; :class:`Findings`, when asked for, holds all of them with their places, for a repair.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eokafka.verify.progress import NO_PROGRESS, Progress, tracked
from eokafka.verify.records import CsvText, Loc, Read, Side, Value, csv_matches
from eokafka.verify.report import SHOWN, Range, Report

__all__ = ["Copy", "Findings", "Range", "Report", "compare"]


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


@dataclass(frozen=True)
class Copy:
    """One destination copy of a source record: where it is, and whether its values match."""

    loc: Loc
    ok: bool


@dataclass
class Findings:
    """Every difference, with its places: what a repair works from.

    ``copies`` has the ids found more than once at the destination or whose first copy
    differs: the source record's place and every copy, in the order read.
    """

    missing: list[tuple[str, Loc]] = field(default_factory=list)
    copies: dict[str, tuple[Loc, list[Copy]]] = field(default_factory=dict)
    extra: list[tuple[str, Loc]] = field(default_factory=list)
    unreadable: list[tuple[Loc, str]] = field(default_factory=list)
    source_unreadable: list[tuple[Loc, str]] = field(default_factory=list)
    source_repeated: dict[str, Loc] = field(default_factory=dict)  # the id, a place of it


def _unreadable(found: list[dict[str, Any]], side: Side, read: Read) -> None:
    if len(found) < SHOWN:
        found.append({"where": side.where(read.loc), "problem": read.problem})


class _Match:
    """One comparison's running state (both sides, the ranges, the findings)."""

    def __init__(self, report: Report, buckets: int, findings: Findings) -> None:
        self.report = report
        self.buckets = buckets
        self.findings = findings
        self.ranges = [Range(b) for b in range(buckets)]
        self.sums = [[0, 0] for _ in range(buckets)]
        self.src: dict[str, tuple[tuple[Value, ...], Loc]] = {}
        self.flying: set[str] = set()  # ids of source records after the line
        self.seen: dict[str, Copy] = {}  # the first copy of each id at the destination
        self.again: dict[str, list[Copy]] = {}  # every copy of the ids found more than once

    def source(self, side: Side, read: Read, in_flight: Callable[[Loc], bool] | None) -> None:
        report = self.report
        if in_flight is not None and in_flight(read.loc):
            report.in_flight_count += 1
            if read.id is not None:
                self.flying.add(read.id)
            return
        if read.id is None:
            report.source_unreadable_count += 1
            _unreadable(report.source_unreadable, side, read)
            self.findings.source_unreadable.append((read.loc, read.problem))
            return
        report.source_count += 1
        id_ = read.id
        if id_ in self.src:
            self._repeated(side, id_, read.loc)
        self.src[id_] = (read.values, read.loc)
        b = _bucket(id_, self.buckets)
        self.ranges[b].source_count += 1
        self.sums[b][0] = (self.sums[b][0] + _digest(id_, read.values)) % 2**64

    def _repeated(self, side: Side, id_: str, loc: Loc) -> None:
        report = self.report
        report.source_duplicated_count += 1
        self.findings.source_repeated.setdefault(id_, loc)
        if len(report.source_duplicated) < SHOWN:
            report.source_duplicated.append({"id": id_, "where": side.where(loc)})

    def sources_done(self, side: Side) -> None:
        """An id both below and after the line is repeated in the source too."""
        for id_ in sorted(self.flying & self.src.keys()):
            self._repeated(side, id_, self.src[id_][1])

    def destination(self, source: Side, side: Side, read: Read) -> None:
        report = self.report
        if read.id is None:
            report.destination_unreadable_count += 1
            _unreadable(report.destination_unreadable, side, read)
            self.findings.unreadable.append((read.loc, read.problem))
            return
        id_ = read.id
        expected = self.src.get(id_)
        if expected is None and id_ in self.flying:
            report.destination_in_flight_count += 1
            return
        report.destination_count += 1
        values = _resolved(read.values, None if expected is None else expected[0])
        copy = Copy(read.loc, expected is not None and expected[0] == values)
        first = self.seen.setdefault(id_, copy)
        if first is not copy:
            self.again.setdefault(id_, [first]).append(copy)
        b = _bucket(id_, self.buckets)
        self.ranges[b].destination_count += 1
        self.sums[b][1] = (self.sums[b][1] + _digest(id_, values)) % 2**64
        if expected is None:
            report.extra_count += 1
            self.findings.extra.append((id_, read.loc))
            if len(report.extra) < SHOWN:
                report.extra.append({"id": id_, "where": side.where(read.loc)})
        elif first is copy and not copy.ok:
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
                    "destination_where": side.where(read.loc),
                })

    def finish(self, source: Side, destination: Side) -> None:
        report, findings = self.report, self.findings
        report.duplicated_count = len(self.again)
        for id_, copies in list(self.again.items())[:SHOWN]:
            report.duplicated.append(
                {"id": id_, "count": len(copies),
                 "where": [destination.where(c.loc) for c in copies]}
            )
        for id_, (_, loc) in self.src.items():
            first = self.seen.get(id_)
            if first is None:
                report.missing_count += 1
                findings.missing.append((id_, loc))
                if len(report.missing) < SHOWN:
                    report.missing.append({"id": id_, "where": source.where(loc)})
            elif id_ in self.again or not first.ok:
                findings.copies[id_] = (loc, self.again.get(id_, [first]))
        for r, (s, d) in zip(self.ranges, self.sums, strict=True):
            r.source_checksum, r.destination_checksum = f"{s:016x}", f"{d:016x}"
        report.ranges = self.ranges


def compare(
    report: Report,
    source: Side,
    destination: Side,
    buckets: int = 16,
    *,
    in_flight: Callable[[Loc], bool] | None = None,
    findings: Findings | None = None,
    progress: Progress = NO_PROGRESS,
) -> Report:
    """Fill ``report`` (and ``findings``) with the differences between the two sides.

    ``in_flight(loc)`` says whether a source record is after the line a running sink has
    committed up to: such records are not checked yet, nor the destination copies of their ids.
    """
    match = _Match(report, buckets, Findings() if findings is None else findings)
    for read in tracked(source.reads, progress, f"reading {source.name}", source.total):
        match.source(source, read, in_flight)
    match.sources_done(source)
    for read in tracked(destination.reads, progress, f"reading {destination.name}",
                        destination.total):
        match.destination(source, destination, read)
    match.finish(source, destination)
    return report
