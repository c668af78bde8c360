"""Apps for ``eokafka describe`` tests: a DSL pipeline with every kind of topic, and a
hand-written processor configured with a secret."""

from __future__ import annotations

import os

import eokafka
from eokafka import serdes, windows

S, J = serdes.String(), serdes.Json()

words = eokafka.App("words", on_error="dead-letter")
(
    words.stream("sentences", key_serde=S, value_serde=S)
    .flat_map(lambda key, line: [(word.lower(), word) for word in line.split()])
    .group_by_key(name="by-word")
    .count(name="word-counts")
    .to("word-counts", key_serde=S, value_serde=J)
)
(
    words.stream("clicks", key_serde=S, value_serde=J)
    .group_by_key()
    .window(windows.Tumbling(60_000), late="dead-letter")
    .count(name="per-min")
)
words.store("word-counts", backend="rocksdb")

secured = eokafka.App(
    "secured",
    config={
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": os.environ.get("TEST_SECRET", "s3cret-in-code"),
        "ssl.key.password": "key-" + os.environ.get("TEST_SECRET", "pw"),
    },
)


@secured.processor("payments", stores=["totals"], outputs=["totals-out"])
def total(record: object, ctx: object) -> None:
    """Only described, never run."""
