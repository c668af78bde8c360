"""Serdes: turn record keys and values into bytes and back.

Serdes run once per record on the hot path, so every serde does its setup (schema parsing,
encoder construction, header packing) in ``__init__`` and keeps ``serialize``/``deserialize``
to the work that has to happen per call. ``None`` always maps to ``None`` in both directions
because Kafka uses it for null keys and tombstones, which no format should reinterpret.

Failures raise :class:`SerdeError` whose message names the serde; the runtime adds the topic,
partition and offset it knows and the serde does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eokafka.serdes.core import Bytes, Json, Serde, SerdeError, String, is_identity

if TYPE_CHECKING:
    from eokafka.serdes.avro import Avro, AvroSchema, ConfluentAvro

_AVRO = frozenset({"Avro", "AvroSchema", "ConfluentAvro"})

__all__ = [
    "Avro",
    "AvroSchema",
    "Bytes",
    "ConfluentAvro",
    "Json",
    "Serde",
    "SerdeError",
    "String",
    "is_identity",
]


def __getattr__(name: str) -> Any:
    """The Avro serdes load fastavro (tens of ms) only when an app names one."""
    if name in _AVRO:
        from eokafka.serdes import avro

        return getattr(avro, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
