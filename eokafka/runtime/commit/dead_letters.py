"""The dead-letter record of a poison input: its original bytes plus headers naming the fault."""

from __future__ import annotations

from confluent_kafka import Message

from eokafka.errors import StalledError
from eokafka.record import HEADER_PREFIX, dead_letter_headers
from eokafka.runtime.commit.limits import TopicLimit, headers_size, record_size


def dead_letter_record(
    msg: Message,
    processor: str,
    stage: str,
    exc: BaseException,
    dlq: str,
    limit: TopicLimit,
    extra: list[tuple[str, bytes]] | None = None,
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """Key, value and headers of the dead-letter record, fitted to the dead-letter topic;
    ``extra`` headers (an on_error handler's) follow eokafka's."""
    key = msg.key()
    require_key(key, limit, dlq, f"{msg.topic()}[{msg.partition()}]@{msg.offset()}")
    headers = dead_letter_headers(msg, processor, stage, exc) + (extra or [])
    return fit_dead_letter(key, msg.value(), headers, limit.max_bytes)


def fit_dead_letter(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]], limit: int
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """Cut a dead-letter record down to ``limit`` bytes, so the record can't stall its partition.

    The value goes first, then the key, then the input's own headers; eokafka's headers stay,
    with ``eokafka.truncated`` naming what was cut and the original sizes beside it.
    """
    if record_size(key, value, headers) <= limit:
        return key, value, headers
    ours = [h for h in headers if h[0].startswith(HEADER_PREFIX)]
    cut: list[str] = []
    marks = [
        (f"{HEADER_PREFIX}original.key.size", str(len(key or b"")).encode()),
        (f"{HEADER_PREFIX}original.value.size", str(len(value or b"")).encode()),
    ]
    for part in ("value", "key", "headers"):
        cut.append(part)
        kept = ours if "headers" in cut else headers
        out = [*kept, (f"{HEADER_PREFIX}truncated", ",".join(cut).encode()), *marks]
        room = limit - headers_size(out)
        if part == "value":
            room -= len(key or b"")
            if room >= 0:
                return key, (value or b"")[:room], out
        elif room >= 0:
            return (key or b"")[:room], b"", out
    raise ValueError(f"eokafka's own dead-letter headers alone exceed {limit} bytes")


def require_key(key: bytes | None, limit: TopicLimit, dlq: str, what: str) -> None:
    """A compacted dead-letter topic refuses a record without a key: say so, naming it."""
    if key is None and limit.compacted:
        raise StalledError(
            f"{what} can't be dead-lettered: it has no key and the dead-letter topic {dlq!r} "
            "is compacted, which refuses null keys; give that topic cleanup.policy=delete"
        )
