"""Refusals known before producing: a record too large, or a null key for a compacted topic.

librdkafka refuses a record at ``produce()`` when 36 bytes of framing plus key, value and
serialized headers exceed the producer's ``message.max.bytes``. The broker refuses a batch
larger than the topic's ``max.message.bytes`` (61 bytes of batch header and at least 7 bytes
of record framing around the record) and a null key on a compacted topic (INVALID_RECORD),
and then the whole transaction must abort. Checked before any output of an input record is
produced, such a record goes to the poison policy with no abort at all.

Only certain refusals are checked: with compression (the producer's or a topic's own codec)
the size the broker sees is unknown, so the topic's limit is left to the broker, and a refusal
that still happens is found by the abort-loop narrowing (abort_loop.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import KafkaException

log = logging.getLogger("eokafka.limits")

RECORD_FRAMING: Final = 36  # librdkafka's RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD
BATCH_FRAMING: Final = 61 + 7  # record batch header + the smallest record framing
DEFAULT_MESSAGE_MAX_BYTES: Final = 1_000_000
Header = tuple[str, bytes | str | None]
# topic, value, key, partition, timestamp, headers (as in context.PendingSend)
Pending = tuple[str, bytes | None, bytes | None, int, int | None, list[Header] | None]


def _varint_size(n: int) -> int:
    """Bytes of a zigzag varint, as Kafka frames header key and value lengths."""
    z = (n << 1) ^ (n >> 63)
    size = 1
    while z >= 0x80:
        z >>= 7
        size += 1
    return size


def headers_size(headers: Iterable[Header] | None) -> int:
    """Serialized size of record headers, as librdkafka counts it against message.max.bytes."""
    if not headers:
        return 0
    total = 0
    for name, value in headers:
        k = len(name.encode())
        v = -1 if value is None else len(value.encode() if isinstance(value, str) else value)
        total += _varint_size(k) + k + _varint_size(v) + max(v, 0)
    return total


def record_size(key: bytes | None, value: bytes | None, headers: Iterable[Header] | None) -> int:
    """Key, value and headers: the part of a record that a size limit is checked against."""
    return (len(key) if key else 0) + (len(value) if value else 0) + headers_size(headers)


@dataclass(frozen=True, slots=True)
class TopicLimit:
    max_bytes: int  # the most key + value + headers that can be sent there
    setting: str  # which setting makes the limit, for messages
    compacted: bool


class OutputLimits:
    """Per-topic limits, read once per topic when it is first used."""

    def __init__(
        self, producer_conf: Mapping[str, Any], topic_configs: Callable[[str], dict[str, str]]
    ) -> None:
        message_max = int(producer_conf.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
        self.producer_max = message_max - RECORD_FRAMING
        self._producer_setting = f"the producer's message.max.bytes={message_max}"
        codec = str(producer_conf.get("compression.type", producer_conf.get("compression.codec")))
        self._compressed = codec not in ("none", "None")
        self._configs = topic_configs
        self.topics: dict[str, TopicLimit] = {}
        # Topics whose refusals librdkafka would not report at produce(): checked per output.
        self.guarded: set[str] = set()

    def learn(self, topic: str) -> TopicLimit:
        """The limits of a topic records are sent to; guarded if librdkafka can't tell."""
        limit = self._limit(topic)
        if topic not in self.guarded and (limit.compacted or limit.max_bytes < self.producer_max):
            self.guarded.add(topic)
        return limit

    def _limit(self, topic: str) -> TopicLimit:
        limit = self.topics.get(topic)
        if limit is None:
            limit = self.topics[topic] = self._read(topic)
        return limit

    def _read(self, topic: str) -> TopicLimit:
        try:
            config = self._configs(topic)
        except (KafkaException, ValueError, TimeoutError) as exc:
            log.warning(
                "could not read the configs of topic %r (%s); only message.max.bytes is "
                "checked before producing to it",
                topic,
                exc,
            )
            return TopicLimit(self.producer_max, self._producer_setting, False)
        compacted = "compact" in config.get("cleanup.policy", "")
        topic_codec = config.get("compression.type", "producer")
        raw = config.get("max.message.bytes")
        if raw is None or self._compressed or topic_codec not in ("producer", "uncompressed"):
            return TopicLimit(self.producer_max, self._producer_setting, compacted)
        topic_max = int(raw) - BATCH_FRAMING
        if topic_max < self.producer_max:
            return TopicLimit(topic_max, f"max.message.bytes={raw} of topic {topic!r}", compacted)
        return TopicLimit(self.producer_max, self._producer_setting, compacted)

    def record_limit(self, topic: str) -> int:
        """The most key + value bytes a record to ``topic`` can carry (a changelog's limit).

        Not guarded: a changelog gets no ctx.send outputs, its writes are checked at put, so
        its being compacted must not make every output of a stateful app pay the check.
        """
        return self._limit(topic).max_bytes

    def refusal(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[Header] | None
    ) -> str | None:
        """Why ``topic`` would refuse this record, or None when it may well be accepted."""
        return self.first_refusal([(topic, value, key, -1, None, headers)])

    def first_refusal(self, pending: list[Pending]) -> str | None:
        """The first of one input record's outputs that would be refused, as a reason.

        Runs for every record sent to a guarded topic: inline arithmetic, no calls.
        """
        topics = self.topics
        for topic, value, key, _, _, headers in pending:
            limit = topics.get(topic) or self.learn(topic)
            if key is None and limit.compacted:
                return (
                    f"INVALID_RECORD: a record with a null key can't go to the compacted topic "
                    f"{topic!r} (cleanup.policy contains compact)"
                )
            size = (len(key) if key else 0) + (len(value) if value else 0)
            if headers:
                size += headers_size(headers)
            if size > limit.max_bytes:
                return (
                    f"MSG_SIZE_TOO_LARGE: a {size}-byte record (key + value + headers) for "
                    f"topic {topic!r}; {limit.setting} lets at most {limit.max_bytes} bytes through"
                )
        return None
