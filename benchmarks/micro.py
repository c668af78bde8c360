"""Per-record microbenchmarks: what a JSON value and a produce() call cost, in CPU.

No broker, no worker: each case runs N times in a loop on this thread and reports the
thread's CPU time per call (``time.thread_time``), the best of ``--rounds`` rounds.

- JSON: the ~100-byte values of the passthrough benchmark (``benchmarks.passthrough.json_value``)
  decoded and encoded again, by bare orjson and by ``serdes.Json``; the difference is what
  serdes.Json adds: its parity guards (a scan for 19+ digit runs on decode, a NaN check when
  the output holds ``null``), orjson's passthrough options and its own Python call.
- produce(): confluent-kafka's ``Producer.produce`` of one such value into an unconnected
  producer's local queue (purged between rounds), all arguments positional, as eokafka's hot
  path passes them, against ``timestamp=`` given as a keyword.

    python -m benchmarks.micro                    # 200,000 calls, best of 5
    python -m benchmarks.micro --calls 50000 --rounds 3
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import orjson
from confluent_kafka import Producer

from benchmarks.passthrough import json_value
from eokafka.serdes import Json


def per_call_us(case: Callable[[int], None], calls: int, rounds: int) -> float:
    """The best round's thread CPU time per call, in microseconds."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        case(calls)
        best = min(best, time.thread_time() - started)
    return best / calls * 1e6


def json_cases() -> dict[str, Callable[[int], None]]:
    raw = json_value(12_345)
    obj = orjson.loads(raw)
    serde = Json()
    loads, dumps = orjson.loads, orjson.dumps
    deserialize, serialize = serde.deserialize, serde.serialize

    def bare_decode(n: int) -> None:
        for _ in range(n):
            loads(raw)

    def bare_encode(n: int) -> None:
        for _ in range(n):
            dumps(obj)

    def serde_decode(n: int) -> None:
        for _ in range(n):
            deserialize(raw)

    def serde_encode(n: int) -> None:
        for _ in range(n):
            serialize(obj)

    return {
        "orjson.loads (bare)": bare_decode,
        "orjson.dumps (bare)": bare_encode,
        "serdes.Json().deserialize": serde_decode,
        "serdes.Json().serialize": serde_encode,
    }


def drain(producer: Producer) -> None:
    """Drop what the round queued (it is never sent) and serve the purge's reports."""
    producer.purge(in_queue=True)
    producer.poll(0)


def produce_cases(producer: Producer) -> dict[str, Callable[[int], None]]:
    value, key, ts = json_value(12_345), b"12345", 1_700_000_000_000
    produce = producer.produce

    def positional(n: int) -> None:
        for _ in range(n):
            produce("micro", value, key, 0, None, None, ts)
        drain(producer)

    def keyword(n: int) -> None:
        for _ in range(n):
            produce("micro", value, key, 0, timestamp=ts)
        drain(producer)

    return {
        "produce(), all positional": positional,
        "produce(), timestamp= keyword": keyword,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=200_000, help="calls per round")
    p.add_argument("--rounds", type=int, default=5, help="rounds; the best one counts")
    args = p.parse_args()
    producer = Producer(
        {
            "bootstrap.servers": "127.0.0.1:1",  # never connects: produce() only enqueues
            "log_level": 0,
            "linger.ms": 5,
            "queue.buffering.max.messages": 2 * args.calls * args.rounds,
            "queue.buffering.max.kbytes": 2_097_151,
        }
    )
    print(f"thread CPU per call, best of {args.rounds} rounds of {args.calls:,} calls")
    results = {}
    for name, case in {**json_cases(), **produce_cases(producer)}.items():
        results[name] = per_call_us(case, args.calls, args.rounds)
        print(f"  {name:<32} {results[name]:6.3f} us")
    bare = results["orjson.loads (bare)"] + results["orjson.dumps (bare)"]
    serde = results["serdes.Json().deserialize"] + results["serdes.Json().serialize"]
    keyword = results["produce(), timestamp= keyword"] - results["produce(), all positional"]
    print(f"JSON decode + encode: bare orjson {bare:.3f} us, serdes.Json {serde:.3f} us "
          f"({serde - bare:+.3f} us: guards, options, call)")  # fmt: skip
    print(f"timestamp= as a keyword costs {keyword:+.3f} us per produce()")
    producer.purge()
    producer.flush(0)


if __name__ == "__main__":
    main()
