"""ProcessorContext.store: the stores of the task the runtime bound; sends as bytes."""

from __future__ import annotations

import pytest

from eokafka.context import ProcessorContext
from eokafka.errors import TopologyError
from eokafka.state import InMemoryBackend, Store


def _no_topic_check(topic: str) -> None:
    pass


def test_store_reads_the_stores_of_the_bound_task() -> None:
    ctx = ProcessorContext(_no_topic_check)
    with pytest.raises(TopologyError, match=r"'counts' is not available on partition -1"):
        ctx.store("counts")
    task_stores: dict[str, Store] = {}  # the task's map: filled as its stores open
    ctx.bind(2, task_stores)
    store = Store("counts", InMemoryBackend())
    task_stores["counts"] = store
    assert ctx.store("counts") is store and ctx.partition == 2
    ctx.bind(3, {})
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
