"""A repair plan: what to add, remove and fix at a destination so that a check passes.

The plan is built from a check's findings, the same way for every destination; what a
destination can't do (a Kafka log can neither delete nor change a record) is left, with why.

* missing: **add** the source record;
* found more than once: keep one copy (the first whose values match, else the first) and
  **remove** the others; **fix** the kept copy if its values differ;
* in the destination only (extra), or without a readable id there: **remove** only when
  asked (``delete_extra``, ``delete_unkeyed``), else **leave**: a source whose retention
  deleted old records, or a table other writers share, has them for a reason;
* an id repeated in the source, or a source record without a readable id: **leave**, as
  there is no telling which value is right, or which record it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from eokafka.verify.records import Loc

Action = Literal["add", "remove", "fix", "leave"]
ACTIONS: tuple[Action, ...] = ("add", "remove", "fix", "leave")


@dataclass
class Item:
    """One change (or one difference left as it is), with the places it concerns."""

    action: Action
    reason: str  # missing, duplicate, differing, extra, unkeyed, source-unkeyed, source-repeated
    id: str | None
    where: str | None = None  # the destination record concerned
    source_where: str | None = None  # the source record written, or the one concerned
    loc: Loc | None = None
    source_loc: Loc | None = None
    note: str = ""  # why it is left

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "reason": self.reason, "id": self.id}
        for name in ("where", "source_where", "note"):
            value = getattr(self, name)
            if value:
                out[name] = value
        return out

    def leave(self, note: str) -> None:
        self.action = "leave"
        self.note = note

    def text(self) -> str:
        what = f"{self.id} ({self.reason})" if self.id is not None else f"({self.reason})"
        places = [p for p in (self.where, self.source_where and f"from {self.source_where}") if p]
        note = f": {self.note}" if self.note else ""
        return f"{what} {', '.join(places)}{note}".rstrip()


@dataclass(frozen=True)
class Capabilities:
    """What a destination can do besides adding a record."""

    remove: bool
    fix: bool
    why_not: str = ""  # said of what it can't do


@dataclass
class Plan:
    """The changes a repair makes (or would make), and what it leaves."""

    destination: str
    items: list[Item] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)  # how the destination carries it out

    def of(self, action: Action) -> list[Item]:
        return [i for i in self.items if i.action == action]

    @property
    def changes(self) -> int:
        return sum(i.action != "leave" for i in self.items)

    def still_failing(self, allow_unkeyed: bool) -> bool:
        """Whether a check would still fail once the changes are made."""
        return any(
            i.action == "leave" and not (allow_unkeyed and i.reason in ("unkeyed",
                                                                         "source-unkeyed"))
            for i in self.items
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"destination": self.destination}
        for action in ACTIONS:
            out[action] = [i.as_dict() for i in self.of(action)]
        out["steps"] = list(self.steps)
        return out

    def summary(self) -> str:
        lines = [f"repair plan for {self.destination}:"]
        titles = {"add": "add", "remove": "remove", "fix": "fix", "leave": "leave as it is"}
        for action in ACTIONS:
            items = self.of(action)
            if items:
                lines.append(f"{titles[action]}: {len(items)}"
                             + "".join(f"\n  {i.text()}" for i in items))
        if not self.items:
            lines.append("nothing to repair")
        lines.extend(f"step: {s}" for s in self.steps)
        return "\n".join(lines)


@dataclass
class Done:
    """What a repair changed."""

    added: int = 0
    removed: int = 0
    fixed: int = 0
    steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed, "fixed": self.fixed,
                "steps": list(self.steps)}

    def summary(self) -> str:
        return "\n".join(
            [f"repaired: {self.added} added, {self.removed} removed, {self.fixed} fixed",
             *(f"done: {s}" for s in self.steps)]
        )
