"""The dead-letter record of a poison input: its original bytes plus headers naming the fault."""

from __future__ import annotations

from confluent_kafka import Message

HEADER_PREFIX = "eokafka."


def dead_letter_headers(
    msg: Message, processor: str, stage: str, exc: BaseException
) -> list[tuple[str, bytes]]:
    """The input's own headers first, then where it came from and what went wrong."""
    own = [(k, v if v is not None else b"") for k, v in (msg.headers() or [])]
    return [
        *own,
        (f"{HEADER_PREFIX}error.stage", stage.encode()),
        (f"{HEADER_PREFIX}error.class", type(exc).__name__.encode()),
        (f"{HEADER_PREFIX}error.message", str(exc).encode(errors="replace")[:4096]),
        (f"{HEADER_PREFIX}processor", processor.encode()),
        (f"{HEADER_PREFIX}source.topic", msg.topic().encode()),
        (f"{HEADER_PREFIX}source.partition", str(msg.partition()).encode()),
        (f"{HEADER_PREFIX}source.offset", str(msg.offset()).encode()),
        (f"{HEADER_PREFIX}source.timestamp", str(msg.timestamp()[1]).encode()),
    ]
