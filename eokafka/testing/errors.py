"""The errors the in-memory clients raise, built as librdkafka's are (code, fatal/abortable)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException


def kafka_error(code: int, reason: str, **flags: bool) -> KafkaException:
    """``KafkaException(KafkaError(code, reason, **flags))``, as the real clients raise it."""
    return KafkaException(KafkaError(code, reason, **flags))
