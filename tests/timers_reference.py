"""The plain-Python reference for stream-time timers (eokafka/timers.py), over the records of
one partition in order: what fires, when, in which order. Nothing of eokafka is used.

The app it models: an "order" record sets its key's timer to ``timestamp + timeout``, a
"payment" record cancels it; a recurring schedule every ``every`` ms of stream time and a
one-shot at ``at``. Stream time is the largest timestamp so far; after each record, everything
due at or before it fires, by (time, schedule < one-shot < key timer, key), and a recurring
schedule fires once per record at the last multiple of its interval the record passed.
"""

from __future__ import annotations

Event = tuple[str, str, int]  # kind ("order", "payment", other: ignored), key, timestamp
Fired = tuple[str, str, int]  # "every", "at" or "key"; the key ("" for schedules); time


def fired(events: list[Event], timeout: int, every: int, at: int) -> list[Fired]:
    timers: dict[str, int] = {}
    out: list[Fired] = []
    stream: int | None = None
    at_done = False
    for kind, key, ts in events:
        if kind == "order":
            timers[key] = ts + timeout
        elif kind == "payment":
            timers.pop(key, None)
        before = stream
        if stream is None or ts > stream:
            stream = ts
        due: list[tuple[int, int, bytes, Fired]] = []
        if before is not None and stream // every > before // every:
            t = stream - stream % every
            due.append((t, 0, b"", ("every", "", t)))
        if not at_done and stream >= at:
            at_done = True
            due.append((at, 1, b"", ("at", "", at)))
        due += [(t, 2, k.encode(), ("key", k, t)) for k, t in timers.items() if t <= stream]
        for *_, what in sorted(due, key=lambda d: d[:3]):
            if what[0] == "key":
                del timers[what[1]]
            out.append(what)
    return out
