"""Serdes: turn record keys and values into bytes and back.

Serdes run once per record on the hot path, so every serde does its setup (schema parsing,
encoder construction, header packing) in ``__init__`` and keeps ``serialize``/``deserialize``
to the work that has to happen per call. ``None`` always maps to ``None`` in both directions
because Kafka uses it for null keys and tombstones, which no format should reinterpret.

Failures raise :class:`SerdeError` whose message names the serde; the runtime adds the topic,
partition and offset it knows and the serde does not.
"""

from eokafka.serdes.avro import Avro, AvroSchema, ConfluentAvro
from eokafka.serdes.core import Bytes, Json, Serde, SerdeError, String, is_identity

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
