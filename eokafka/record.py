"""The record a processor receives."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Message


class Record:
    """An input record: deserialized key and value; the rest is read lazily from the message.

    Lazy attributes keep the per-record cost of the worker loop close to a bare consume loop.
    """

    __slots__ = ("key", "value", "_msg")

    def __init__(self, key: Any, value: Any, msg: Message) -> None:
        # The worker's loop sets these three slots itself, without this call: keep it to them.
        self.key = key
        self.value = value
        self._msg = msg

    @property
    def topic(self) -> str:
        return self._msg.topic()  # type: ignore[no-any-return]

    @property
    def partition(self) -> int:
        return self._msg.partition()  # type: ignore[no-any-return]

    @property
    def offset(self) -> int:
        return self._msg.offset()  # type: ignore[no-any-return]

    @property
    def timestamp(self) -> int:
        """Milliseconds since the epoch (the record's CreateTime or LogAppendTime)."""
        return self._msg.timestamp()[1]  # type: ignore[no-any-return]

    @property
    def headers(self) -> list[tuple[str, bytes | None]]:
        return self._msg.headers() or []

    @property
    def message(self) -> Message:
        """The consumed message itself (for dead-letter headers and the like)."""
        return self._msg

    @property
    def raw_key(self) -> bytes | None:
        return self._msg.key()  # type: ignore[no-any-return]

    @property
    def raw_value(self) -> bytes | None:
        return self._msg.value()  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return (
            f"Record(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
            f"key={self.key!r}, value={self.value!r})"
        )
