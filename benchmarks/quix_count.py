"""Quix Streams exactly-once count by key: the same job as eokafka's ``count`` contender.

Every JSON value is parsed (``--values json``, the default; ``bytes``: not parsed), the
record key's count is read from and written to the app's state (per message key, as Quix
keeps state), and the new count goes out for every input, JSON-encoded under the same key:
the output ``benchmarks/count_by_key.py`` checks read_committed (per key 1, 2, ..., n).
``processing_guarantee="exactly-once"``, the commit interval and record count trigger of
the other contenders, and a changelog topic that Quix creates and writes in each
transaction. ``--store memory`` (the default, like eokafka's count store) uses Quix's
``MemoryStore``; ``rocksdb`` its default ``RocksDBStore``.

    python -m benchmarks.quix_count --bootstrap 127.0.0.1:39092 --input IN \\
        --output OUT --group G --state-dir /tmp/quix-state

Quix handles SIGTERM/SIGINT itself (commits its checkpoint and leaves).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from benchmarks.quix_passthrough import add_options, application

if TYPE_CHECKING:
    from quixstreams import State


def count(_value: Any, state: State) -> int:
    """The key's new count; the value is parsed (by the topic's deserializer) but unused,
    as in eokafka's count app."""
    n = state.get("count", 0) + 1
    state.set("count", n)
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(p)
    p.add_argument("--values", choices=("json", "bytes"), default="json")
    p.add_argument("--store", choices=("memory", "rocksdb"), default="memory")
    args = p.parse_args()
    from quixstreams.state.memory import MemoryStore
    from quixstreams.state.rocksdb import RocksDBStore

    app = application(args, changelogs=True)
    source = app.topic(args.input, key_deserializer="str", value_deserializer=args.values)
    sink = app.topic(args.output, key_serializer="str", value_serializer="json")
    sdf = app.dataframe(source)
    sdf.register_store(store_type=MemoryStore if args.store == "memory" else RocksDBStore)
    sdf = sdf.apply(count, stateful=True)
    sdf.to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
