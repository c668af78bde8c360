"""ProcessorContext.store: the runtime's live map of open stores first, then its lookup."""

from __future__ import annotations

import pytest

from eokafka.context import ProcessorContext
from eokafka.errors import TopologyError
from eokafka.state import InMemoryBackend, Store


def _no_topic_check(topic: str) -> None:
    pass


def test_store_reads_the_live_map_of_open_stores_then_falls_back() -> None:
    def lookup(name: str, partition: int) -> Store:
        raise TopologyError(f"store {name!r} is not available on partition {partition}")

    live: dict[tuple[str, int], Store] = {}  # empty when the context is built, filled later
    ctx = ProcessorContext(_no_topic_check, lookup, open_stores=live)
    store = Store("counts", InMemoryBackend())
    live[("counts", 2)] = store
    ctx.partition = 2
    assert ctx.store("counts") is store
    ctx.partition = 3
    with pytest.raises(TopologyError, match="partition 3"):
        ctx.store("counts")


def test_send_encodes_str_keys_and_values_as_utf8() -> None:
    ctx = ProcessorContext(_no_topic_check)
    ctx.send("out", key="ключ", value="värde")
    ctx.send("out", key=b"k", value=bytearray(b"v"))
    assert [(p[1], p[2]) for p in ctx.pending] == [
        ("värde".encode(), "ключ".encode()),
        (b"v", b"k"),
    ]
    with pytest.raises(TypeError, match="needs a value_serde"):
        ctx.send("out", value=7)
