"""The record a processor receives, and the headers that say where it came from when it is
dead-lettered."""

from __future__ import annotations

from typing import Any, Protocol

HEADER_PREFIX = "eokafka."


class Message(Protocol):
    """What a record reads of its consumed message (``confluent_kafka.Message`` has it all),
    so that records, and the DSL that reads them, need no Kafka client."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def headers(self) -> list[tuple[str, bytes | None]] | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...


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
        return self._msg.topic()  # type: ignore[return-value]  # set on a consumed message

    @property
    def partition(self) -> int:
        return self._msg.partition()  # type: ignore[return-value]  # set on a consumed message

    @property
    def offset(self) -> int:
        return self._msg.offset()  # type: ignore[return-value]  # set on a consumed message

    @property
    def timestamp(self) -> int:
        """Milliseconds since the epoch (the record's CreateTime or LogAppendTime)."""
        return self._msg.timestamp()[1]

    @property
    def headers(self) -> list[tuple[str, bytes | None]]:
        return self._msg.headers() or []

    @property
    def message(self) -> Message:
        """The consumed message itself (for dead-letter headers and the like)."""
        return self._msg

    @property
    def raw_key(self) -> bytes | None:
        return self._msg.key()

    @property
    def raw_value(self) -> bytes | None:
        return self._msg.value()

    def __repr__(self) -> str:
        return (
            f"Record(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
            f"key={self.key!r}, value={self.value!r})"
        )


def fault_headers(stage: str, exc: BaseException) -> list[tuple[str, bytes]]:
    """What went wrong, and at which stage: the headers every dead letter carries."""
    return [
        (f"{HEADER_PREFIX}error.stage", stage.encode()),
        (f"{HEADER_PREFIX}error.class", type(exc).__name__.encode()),
        (f"{HEADER_PREFIX}error.message", str(exc).encode(errors="replace")[:4096]),
    ]


def dead_letter_headers(
    msg: Message, processor: str, stage: str, exc: BaseException
) -> list[tuple[str, bytes]]:
    """The input's own headers first, then where it came from and what went wrong."""
    own = [(k, v if v is not None else b"") for k, v in (msg.headers() or [])]
    return [
        *own,
        *fault_headers(stage, exc),
        (f"{HEADER_PREFIX}processor", processor.encode()),
        (f"{HEADER_PREFIX}source.topic", str(msg.topic()).encode()),
        (f"{HEADER_PREFIX}source.partition", str(msg.partition()).encode()),
        (f"{HEADER_PREFIX}source.offset", str(msg.offset()).encode()),
        (f"{HEADER_PREFIX}source.timestamp", str(msg.timestamp()[1]).encode()),
    ]
