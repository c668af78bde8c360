"""Quix Streams exactly-once passthrough: the same copy job as eokafka's, for comparison.

JSON values parsed and written back (``--values json``, the default) or bytes copied
untouched (``--values bytes``), ``processing_guarantee="exactly-once"``, the same
commit interval and record count trigger as eokafka, and eokafka's producer buffering and
linger settings. Quix polls one message at a time; it has no batch-size knob.

    python -m benchmarks.quix_passthrough --bootstrap 127.0.0.1:39092 --input IN \\
        --output OUT --group G --state-dir /tmp/quix-state

Quix handles SIGTERM/SIGINT itself (commits its checkpoint and leaves).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quixstreams import Application


def add_options(p: argparse.ArgumentParser) -> None:
    """The options every Quix contender takes (quix_count.py too)."""
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--state-dir", required=True, help="Quix insists on one, even stateless")
    p.add_argument("--commit-interval-ms", type=int, default=100)
    p.add_argument("--commit-every", type=int, default=10_000)


def application(args: argparse.Namespace, changelogs: bool) -> Application:
    """An exactly-once Quix Application with eokafka's commit triggers and client settings;
    ``changelogs``: a stateful app's store changelog topics (Quix creates them)."""
    from quixstreams import Application  # imported late: it is slow and only needed here

    return Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        processing_guarantee="exactly-once",
        commit_interval=args.commit_interval_ms / 1000,
        commit_every=args.commit_every,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        # The benchmarks create the input and output topics, as for the other contenders;
        # a stateful app needs Quix to create its changelog topic.
        auto_create_topics=changelogs,
        use_changelog_topics=changelogs,
        loglevel="WARNING",
        # eokafka's producer buffering; delivery.report.only.error is left out because
        # Quix tracks produced offsets through its delivery callbacks.
        producer_extra_config={
            "linger.ms": 5,
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 512 * 1024,
        },
        # and eokafka's prefetch setting: no second-long fetch pause when its queue fills.
        consumer_extra_config={"fetch.queue.backoff.ms": 10},
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(p)
    p.add_argument("--values", choices=("json", "bytes"), default="json")
    args = p.parse_args()
    app = application(args, changelogs=False)
    source = app.topic(args.input, key_deserializer="bytes", value_deserializer=args.values)
    sink = app.topic(args.output, key_serializer="bytes", value_serializer=args.values)
    sdf = app.dataframe(source)
    sdf.to_topic(sink)
    app.run()

if __name__ == "__main__":
    main()
