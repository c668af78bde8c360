"""State store backends side by side: changelog restore, get/put through Store, disk size.

No broker: the changelog records are generated in memory, so the figures are the store
layer's own cost (Store overhead included) and nothing of Kafka's.

    python -m benchmarks.store_backends                    # 1,000,000 records, all backends
    python -m benchmarks.store_backends --records 100000   # quick
    python -m benchmarks.store_backends --backends sqlite,rocksdb --rounds 3

What each column measures, per backend, on a fresh store in a temporary directory:

- restore rec/s: ``Store.restore_batch`` over N changelog records (JSON values of about
  100 bytes, over K distinct keys, every key written N/K times in shuffled order) in batches
  of B, each batch one atomic backend write with its checkpoint. The target is 200,000/s.
- coalesced rec/s: the same with ``flush=False`` on all but the last batch, so the store
  merges batches (last write per key) before writing; the gain depends on how often keys
  repeat (N/K here; a fully compacted changelog gains nothing, try --records equal to --keys).
- get/s: ``Store.get`` of random existing keys, committed state, Json serdes both ways.
- put/s: ``Store.put`` of random keys with ``Store.commit`` after every 1,000 writes; the
  commit time (one backend write per 1,000 keys) is included.
- disk MB: the restored-then-updated store's files after ``close()`` (RocksDB flushed its
  memtables, sqlite checkpointed and removed its WAL). 0 for memory.
- memory B/key (memory backend only): the Python heap the restored store holds per key,
  measured with tracemalloc on a separate restore (keys, values, the dict and the store's
  own structures), beside raw B/key, the mean size of the key and value bytes it holds.
  The other backends keep their data in C (RocksDB's block cache and memtables, sqlite's
  page cache), which tracemalloc does not see; their disk MB is their footprint.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from eokafka.serdes import Json
from eokafka.state import StoreSpec, open_store
from eokafka.state.store import Store

BACKENDS = ("memory", "sqlite", "rocksdb")
TARGET_RESTORE = 200_000
APP = "bench"

Batch = list[tuple[bytes, bytes | None]]


def make_changelog(records: int, keys: int, batch: int, seed: int) -> list[Batch]:
    """The changelog as restore batches; values are ~100-byte JSON like a typical aggregate."""
    rng = random.Random(seed)
    json = Json()
    names = [f"customer-{i:08d}" for i in range(keys)]
    order: list[int] = []
    while len(order) < records:
        rnd = list(range(keys))
        rng.shuffle(rnd)
        order.extend(rnd)
    out: list[Batch] = []
    current: Batch = []
    for offset, index in enumerate(order[:records]):
        value = {
            "count": offset // keys + 1,
            "sum": round(rng.random() * 1000, 2),
            "last_seen": 1_700_000_000_000 + offset,
            "region": "eu-west-1",
            "tag": "x" * 20,
        }
        # A fresh key object per record, as a consumer hands out: no shared, pre-hashed keys.
        current.append((json.serialize(names[index]) or b"", json.serialize(value)))
        if len(current) == batch:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def disk_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def timed(action: Callable[[], None]) -> float:
    gc.collect()
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def restore(store: Store, batches: list[Batch], coalesce: bool) -> float:
    """Seconds to restore every batch; ``coalesce`` flushes only with the last batch."""

    def action() -> None:
        offset = 0
        last = len(batches) - 1
        for i, batch in enumerate(batches):
            offset += len(batch)
            store.restore_batch(batch, offset, flush=not coalesce or i == last)

    seconds = timed(action)
    records = sum(len(b) for b in batches)
    assert store.checkpoint == records and not store.restoring, (store, store.checkpoint)
    return seconds


def heap_per_key(batches: list[Batch]) -> tuple[float, float]:
    """(Python heap bytes per key of a restored in-memory store, raw key + value bytes per
    key), the store restored from ``batches`` with tracemalloc on."""
    final: dict[bytes, bytes | None] = {}
    for batch in batches:
        final.update(batch)
    keys = len(final)
    raw = sum(len(k) + len(v or b"") for k, v in final.items()) / keys
    del final
    with tempfile.TemporaryDirectory(prefix="eokafka-store-heap-") as tmp:
        gc.collect()
        tracemalloc.start()
        try:
            store = open_store(StoreSpec("bench", "memory"), tmp, APP, 2)
            offset = 0
            for batch in batches:  # fresh bytes objects, as a consumer hands out
                fresh = [(bytes(bytearray(k)), bytes(bytearray(v or b""))) for k, v in batch]
                offset += len(fresh)
                store.restore_batch(fresh, offset)
                del fresh
            gc.collect()
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        store.close()
    return held / keys, raw


def run_one(kind: str, batches: list[Batch], ops: int, seed: int) -> dict[str, float]:
    records = sum(len(b) for b in batches)
    keys = sorted({k for b in batches for k, _ in b})
    decoded = [Json().deserialize(k) for k in keys]
    spec = StoreSpec("bench", kind)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="eokafka-store-bench-") as tmp:
        coalesced = open_store(spec, tmp, APP, 1)
        coalesced_s = restore(coalesced, batches, coalesce=True)
        coalesced.destroy()
        store = open_store(spec, tmp, APP, 0)
        restore_s = restore(store, batches, coalesce=False)

        rng = random.Random(seed)
        get_keys = [rng.choice(decoded) for _ in range(ops)]
        put_keys = [rng.choice(decoded) for _ in range(ops)]
        value = {"count": 11, "sum": 12.5, "last_seen": 1_700_000_000_000, "region": "eu-west-1"}

        def gets(s: Store = store) -> None:
            get = s.get
            for key in get_keys:
                if get(key) is None:
                    raise AssertionError(f"{kind}: lost key {key!r}")

        def puts(s: Store = store) -> None:
            put = s.put
            offset = records
            for i, key in enumerate(put_keys, 1):
                put(key, value)
                if i % 1000 == 0:
                    offset += 1000
                    s.commit(offset)
            s.commit(offset + ops % 1000)

        get_s = timed(gets)
        put_s = timed(puts)
        close_s = timed(store.close)
        size = disk_bytes(Path(tmp) / APP)
    return {
        "restore": records / restore_s,
        "coalesced": records / coalesced_s,
        "get": ops / get_s,
        "put": ops / put_s,
        "close_s": close_s,
        "disk_mb": size / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--ops", type=int, default=200_000, help="gets and puts each")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--rounds", type=int, default=1, help="report the median of N runs")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    kinds = [k.strip() for k in args.backends.split(",") if k.strip()]
    for kind in kinds:
        if kind not in BACKENDS:
            parser.error(f"unknown backend {kind!r}; choose from {','.join(BACKENDS)}")

    batches = make_changelog(args.records, args.keys, args.batch, args.seed)
    value_bytes = statistics.mean(len(v or b"") for v in (r[1] for r in batches[0]))
    print(
        f"{args.records:,} changelog records, {args.keys:,} keys, batches of {args.batch:,}, "
        f"values ~{value_bytes:.0f} B; {args.ops:,} gets and puts (commit every 1,000); "
        f"{args.rounds} round(s), median; python {sys.version.split()[0]}"
    )
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:  # interleaved, so drift in the machine hits every backend alike
            results[kind].append(run_one(kind, batches, args.ops, args.seed))

    heap = heap_per_key(batches) if "memory" in kinds else None
    header = (
        f"{'backend':<9} {'restore rec/s':>14} {'coalesced rec/s':>16} {'get/s':>10} "
        f"{'put/s':>10} {'close s':>8} {'disk MB':>8}  restore >= {TARGET_RESTORE:,}/s"
    )
    print(header)
    print("-" * len(header))
    for kind in kinds:
        runs = results[kind]

        def med(field: str, rows: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[field] for r in rows)

        verdicts = [
            "ok" if med(field) >= TARGET_RESTORE else "MISSED" for field in ("restore", "coalesced")
        ]
        print(
            f"{kind:<9} {med('restore'):>14,.0f} {med('coalesced'):>16,.0f} {med('get'):>10,.0f} "
            f"{med('put'):>10,.0f} {med('close_s'):>8.2f} {med('disk_mb'):>8.1f}  "
            f"{' / '.join(verdicts)}"
        )
    if heap is not None:
        keys = len({k for b in batches for k, _ in b})
        print(
            f"memory backend at {keys:,} keys: {heap[0]:,.0f} B/key of Python heap held, "
            f"raw key + value {heap[1]:,.0f} B/key ({heap[0] / heap[1]:.1f}x; tracemalloc)"
        )


if __name__ == "__main__":
    main()
