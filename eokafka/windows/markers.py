"""Named markers: a window no record reached yet, a session merged into another one."""

from __future__ import annotations

from typing import Any, Final


class Sentinel:
    """A named marker, compared by identity."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NO_AGGREGATE: Final[Any] = Sentinel("NO_AGGREGATE")  # a window no record reached yet
REMOVED: Final[Any] = Sentinel("REMOVED")  # a session merged into another one
