"""A hand-written confluent-kafka transactional loop: the floor eokafka is measured against.

It does what eokafka's worker does for a passthrough and nothing more: consume a batch,
produce every record into the open transaction, and at the commit deadline (or after
``--commit-every`` records) send the consumer positions with the group metadata and commit.
The librdkafka settings are eokafka's own (``passthrough.py`` checks that they still match
``eokafka.client_configs``), so the gap between the two is the framework's per-record overhead.

``--values json`` does the JSON work eokafka's benchmark apps do: every value is parsed with
orjson and the output written with orjson. ``--mode count`` is count by key: a dict of counts,
the key's new count sent for every input, and at each commit the changed counts written to
``--changelog`` (partition = the input's) inside the transaction, as a store's changelog is.
It starts from an empty changelog (a benchmark's fresh group) and restores nothing.

It imports neither eokafka nor anything eokafka's worker does not need, so that its start-up
(interpreter, imports, producer, group join) is the floor too.

    python -m benchmarks.hand_loop --bootstrap 127.0.0.1:39092 --input IN --output OUT \\
        --group G [--values json] [--mode count --changelog G-counts-changelog]

Stops cleanly (commits the open transaction) on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

TXN_TIMEOUT_MS = 10_000
# eokafka.logs.LIBRDKAFKA_LOGGER: the same Logger object, so the settings compare equal.
LIBRDKAFKA_LOGGER = "eokafka.librdkafka"


def librdkafka_logger() -> logging.Logger:
    return logging.getLogger(LIBRDKAFKA_LOGGER)


def consumer_conf(bootstrap: str, group: str, instance_id: str) -> dict[str, Any]:
    """eokafka.client_configs.consumer_config for the default settings, spelt out."""
    return {
        "bootstrap.servers": bootstrap,
        "logger": librdkafka_logger(),
        "client.id": f"{group}-{instance_id}-consumer",
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.queue.backoff.ms": 10,
        "session.timeout.ms": 45_000,
        "allow.auto.create.topics": False,
        "partition.assignment.strategy": "range",
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "group.instance.id": instance_id,
    }


def producer_conf(bootstrap: str, group: str, instance_id: str) -> dict[str, Any]:
    """eokafka.client_configs.producer_config for the default settings, spelt out."""
    return {
        "bootstrap.servers": bootstrap,
        "logger": librdkafka_logger(),
        "client.id": f"{group}-{instance_id}-producer",
        "linger.ms": 5,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        "delivery.report.only.error": True,
        "allow.auto.create.topics": False,
        "partitioner": "murmur2_random",
        "transactional.id": f"{group}-{instance_id}",
        "enable.idempotence": True,
        "transaction.timeout.ms": TXN_TIMEOUT_MS,
    }


class Failed(Exception):
    """A delivery failed: the benchmark must not report a number for a broken run."""


def _on_delivery(err: KafkaError | None, msg: Message) -> None:
    if err is not None:  # only errors are reported (delivery.report.only.error)
        raise Failed(f"delivery to {msg.topic()}[{msg.partition()}] failed: {err.str()}")


def run(args: argparse.Namespace) -> None:
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    pconf = producer_conf(args.bootstrap, args.group, args.instance_id)
    pconf["on_delivery"] = _on_delivery
    producer = Producer(pconf)
    timeout = TXN_TIMEOUT_MS / 1000
    producer.init_transactions(timeout * 3)
    consumer = Consumer(consumer_conf(args.bootstrap, args.group, args.instance_id))
    consumer.subscribe([args.input])
    interval = args.commit_interval_ms / 1000
    out = args.output
    produce = producer.produce
    changed: dict[int, dict[bytes, int]] = {}  # count mode: per input partition, key -> count
    transform = _transform(args.mode, args.values, changed)
    in_txn = False
    deadline = 0.0
    records = 0
    try:
        while not stopping:
            wait = max(0.0, deadline - time.monotonic()) if in_txn else 0.5
            msgs = consumer.consume(args.batch_size, wait)
            if msgs:
                if not in_txn:
                    producer.begin_transaction()
                    in_txn = True
                    deadline = time.monotonic() + interval
                for msg in msgs:
                    if msg.error() is not None:
                        if msg.error().fatal():
                            raise KafkaException(msg.error())
                        continue
                    ts = msg.timestamp()[1]
                    key, value = transform(msg)
                    while True:
                        try:
                            produce(out, value, key, -1, timestamp=max(ts, 0))
                            break
                        except BufferError:
                            producer.poll(0.05)  # local queue full: let librdkafka drain it
                records += len(msgs)
            if in_txn and (records >= args.commit_every or time.monotonic() >= deadline):
                _commit(producer, consumer, timeout, changed, args.changelog, args.values == "json")
                in_txn = False
                records = 0
        if in_txn:
            _commit(producer, consumer, timeout, changed, args.changelog, args.values == "json")
    finally:
        consumer.close()
        producer.flush(timeout)


Transform = Callable[[Message], tuple[bytes | None, bytes | None]]


def _transform(mode: str, values: str, changed: dict[int, dict[bytes, int]]) -> Transform:
    """An input record's output key and value: copied, parsed and rewritten, or counted."""
    loads, dumps = orjson.loads, orjson.dumps
    if mode == "passthrough":
        if values == "bytes":
            return lambda msg: (msg.key(), msg.value())
        return lambda msg: (msg.key(), dumps(loads(msg.value())))
    counts: dict[bytes, int] = {}
    parse = values == "json"

    def count(msg: Message) -> tuple[bytes | None, bytes | None]:
        key = msg.key() or b""
        if parse:
            loads(msg.value())
        n = counts.get(key, 0) + 1
        counts[key] = n
        part = changed.get(msg.partition())
        if part is None:
            part = changed[msg.partition()] = {}
        part[key] = n
        return key, dumps(n) if parse else b"%d" % n

    return count


def _commit(
    producer: Producer,
    consumer: Consumer,
    timeout: float,
    changed: dict[int, dict[bytes, int]],
    changelog: str | None,
    json_keys: bool,
) -> None:
    """The changed counts to the changelog (count mode; keys as JSON strings with JSON values,
    as eokafka's store writes them), the positions, the commit."""
    for partition, counts in changed.items():
        for key, n in counts.items():
            if json_keys:
                key = orjson.dumps(key.decode())
            while True:
                try:
                    producer.produce(changelog, b"%d" % n, key, partition)
                    break
                except BufferError:
                    producer.poll(0.05)
    changed.clear()
    positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
    if positions:
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), timeout)
    producer.commit_transaction(timeout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--group", required=True, help="consumer group and transactional.id prefix")
    p.add_argument("--instance-id", default="0", help="static member id, as eokafka sets one")
    p.add_argument("--commit-interval-ms", type=int, default=100)
    p.add_argument("--commit-every", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=1_000)
    p.add_argument("--values", choices=("bytes", "json"), default="bytes")
    p.add_argument("--mode", choices=("passthrough", "count"), default="passthrough")
    p.add_argument("--changelog", help="count mode: the counts' changelog topic (it exists)")
    args = p.parse_args()
    if args.mode == "count" and not args.changelog:
        p.error("--mode count needs --changelog")
    run(args)


if __name__ == "__main__":
    main()
