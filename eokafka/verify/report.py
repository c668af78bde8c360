"""What ``eokafka verify`` found: counts, the first records of each kind, key ranges, and how
far it checked; its ``--json`` form and its human summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SHOWN = 20  # records listed per kind of difference


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
    """What ``eokafka verify`` found; ``as_dict`` is its ``--json`` form.

    With a sink's consumer group (``group``), only source records below the offsets it
    committed are checked (``checked_up_to``: per partition, that line and the source's end);
    the records at or after it, and their copies at the destination, are ``in_flight``.
    """

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
    group: str | None = None
    checked_up_to: list[dict[str, Any]] = field(default_factory=list)
    in_flight_count: int = 0
    destination_in_flight_count: int = 0

    @property
    def unreadable_count(self) -> int:
        return self.source_unreadable_count + self.destination_unreadable_count

    @property
    def lag(self) -> int:
        """Source records after the line (not yet expected at the destination)."""
        return sum(max(0, c["end"] - c["offset"]) for c in self.checked_up_to)

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
        if self.group is not None:
            lines.append(self._line_text())
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

    def _line_text(self) -> str:
        parts = []
        for c in self.checked_up_to:
            text = f"[{c['partition']}] {c['offset']} of {c['end']}"
            if c.get("below_commit_because"):
                text += f" ({c['below_commit_because']})"
            parts.append(text)
        return (
            f"checked below the offsets group {self.group} committed: {', '.join(parts)}; "
            f"{self.in_flight_count} source records after them not checked yet"
        )

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
