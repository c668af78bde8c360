"""Late records in the log: one line per record, however many windows and stores it missed.

A record can be late for several windowed aggregations of its pipeline (branches of one
stream), and for several windows of each (hopping windows overlap). Each aggregation notes
it here while the record runs through the pipeline; the pipeline's processor then logs one
line for the record, naming the stores, how many windows of each had closed and what became
of the record. A replay of old data can make every record late: a pipeline logs such a line
for the same stores at most once per 10 s, with a count of those it held back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eokafka.logs import Throttle

log = logging.getLogger("eokafka.windows")


@dataclass(frozen=True)
class LateNote:
    store: str
    windows: int  # the windows of the store the record falls in, all closed or closing
    event_time: int
    stream_time: int
    action: str  # "dropped", or "dead-lettered to <topic>"


class LateRecords:
    """The notes of the record running through one pipeline, logged when it is done."""

    def __init__(self) -> None:
        self.notes: list[LateNote] = []
        self.throttle = Throttle()

    def note(self, note: LateNote) -> None:
        self.notes.append(note)

    def flush(self, where: str) -> None:
        """Log the notes of the record at ``where`` (topic[partition]@offset) as one line."""
        notes, self.notes = self.notes, []
        held = self.throttle.admit(frozenset(n.store for n in notes))
        if held is None:
            return
        total = sum(n.windows for n in notes)
        parts = "; ".join(
            f"late for window store {n.store!r}: event time {n.event_time} is past the close "
            f"of {_windows(n.windows)} at stream time {n.stream_time}, {n.action}"
            for n in notes
        )
        log.warning(
            "late record %s (%s): %s%s", where, _windows(total), parts,
            self.throttle.held_text(held, "late records"),
        )  # fmt: skip


def _windows(n: int) -> str:
    return f"{n} window{'s' if n != 1 else ''}"
