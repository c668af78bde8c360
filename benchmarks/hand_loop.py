"""A hand-written confluent-kafka transactional copy loop: the floor eokafka is measured against.

It does what eokafka's worker does for a passthrough and nothing more: consume a batch,
produce every record into the open transaction, and at the commit deadline (or after
``--commit-every`` records) send the consumer positions with the group metadata and commit.
The librdkafka settings are eokafka's own (``passthrough.py`` checks that they still match
``eokafka.client_configs``), so the gap between the two is the framework's per-record overhead.

    python -m benchmarks.hand_loop --bootstrap 127.0.0.1:39092 --input IN --output OUT \\
        --group G --transactional-id T

Stops cleanly (commits the open transaction) on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from eokafka.logs import librdkafka_logger

TXN_TIMEOUT_MS = 10_000


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
                    while True:
                        try:
                            produce(out, msg.value(), msg.key(), -1, timestamp=max(ts, 0))
                            break
                        except BufferError:
                            producer.poll(0.05)  # local queue full: let librdkafka drain it
                records += len(msgs)
            if in_txn and (records >= args.commit_every or time.monotonic() >= deadline):
                _commit(producer, consumer, timeout)
                in_txn = False
                records = 0
        if in_txn:
            _commit(producer, consumer, timeout)
    finally:
        consumer.close()
        producer.flush(timeout)


def _commit(producer: Producer, consumer: Consumer, timeout: float) -> None:
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
    run(p.parse_args())


if __name__ == "__main__":
    main()
