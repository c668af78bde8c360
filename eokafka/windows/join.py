"""The window of a stream-stream join: how far apart two records' times may be, and when a
record's window closes.

A left record at ``t`` joins the right records of its key with times in
``[t - before_ms, t + after_ms]`` (a right record at ``t`` the left ones in
``[t - after_ms, t + before_ms]``), as Kafka Streams' ``JoinWindows`` with ``before``/``after``.
Stream time is the largest time the join has seen on a partition, on either side:

* A record is *late*, and joins nothing, when its own window has closed on arrival: a left
  record when ``t + after_ms + grace_ms < stream time``, a right one when
  ``t + before_ms + grace_ms < stream time``.
* A record waits in the join's store until no record that is not late could still join it,
  ``t + before_ms + after_ms + grace_ms < stream time``; then it expires, and for a left or
  outer join a record that joined nothing gives its unmatched result. Never earlier: there
  are no spurious unmatched results (KIP-633).
"""

from __future__ import annotations

from dataclasses import dataclass


def _check(name: str, value: object) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"JoinWindows: {name} must be an int >= 0 (ms), not {value!r}")


@dataclass(frozen=True, slots=True)
class JoinWindows:
    """``before_ms``/``after_ms``: how far a right record may be before/after a left one;
    ``after_ms`` defaults to ``before_ms`` (a symmetric window). ``grace_ms``: how long after
    a window's end records may still arrive out of order."""

    before_ms: int
    after_ms: int | None = None
    grace_ms: int = 0

    def __post_init__(self) -> None:
        if self.after_ms is None:
            object.__setattr__(self, "after_ms", self.before_ms)
        _check("before_ms", self.before_ms)
        _check("after_ms", self.after_ms)
        _check("grace_ms", self.grace_ms)

    @property
    def after(self) -> int:
        """``after_ms``, resolved (never None after construction)."""
        assert self.after_ms is not None
        return self.after_ms

    def reach_ms(self, left: bool) -> int:
        """How far after a record's own time its window ends (its lateness bound)."""
        return self.after if left else self.before_ms

    @property
    def expire_after_ms(self) -> int:
        """A buffered record expires once stream time is past its time plus this."""
        return self.before_ms + self.after + self.grace_ms

    def __repr__(self) -> str:
        return (
            f"JoinWindows(before_ms={self.before_ms}, after_ms={self.after_ms}, "
            f"grace_ms={self.grace_ms})"
        )
