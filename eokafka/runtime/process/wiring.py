"""The parts of one worker, built and wired in one place, and the order they commit in.

Each part gets only the narrow interfaces it needs (callables, the task manager, the owner),
never the worker. The commit participants are registered here, once, in the order the
transaction owner calls them (owner.py numbers the steps):

1. the tasks (tasks/commits.py): changelog records before the commit; stores applied,
   offsets noted, marks dropped after it; overlays dropped and inputs rewound on an abort;
   offsets and stores re-read from the broker after a producer re-creation;
2. the sinks: prepare outside writes (after the changelogs, before the Kafka commit), make
   them visible after it, resolve prepared writes on a rewind or re-sync (after the seeks);
3. the poison policy: tells the abort-loop detector what each commit or abort was (it reads
   the tasks' committed offsets, so after the task manager);
4. the repartition purge, after a commit;
5. a bounded run: counts what committed; resumes the inputs it paused on a rewind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from confluent_kafka import Consumer

from eokafka.client_configs import (
    admin_config,
    consumer_config,
    global_consumer_config,
    producer_config,
    rebalance_protocol,
    restore_consumer_config,
)
from eokafka.config import Settings
from eokafka.context import ProcessorContext
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.clients import Clients, config_errors
from eokafka.runtime.commit.abort_loop import AbortLoop
from eokafka.runtime.commit.collector import RecordCollector
from eokafka.runtime.commit.limits import OutputLimits
from eokafka.runtime.commit.owner import TransactionOwner
from eokafka.runtime.commit.poison_policy import PoisonPolicy
from eokafka.runtime.commit.purge import RepartitionPurge
from eokafka.runtime.commit.sinks import SinkSet, check_sinks
from eokafka.runtime.group.members import consumer_error
from eokafka.runtime.group.rebalance import Rebalance
from eokafka.runtime.tasks.changelog_reader import ChangelogReader
from eokafka.runtime.tasks.commits import TaskCommits
from eokafka.runtime.tasks.groups import spans_topics
from eokafka.runtime.tasks.manager import TaskManager
from eokafka.runtime.tasks.process import Processing, processors_of
from eokafka.runtime.tasks.store_loader import StoreLoader
from eokafka.runtime.topics import TopicGuard
from eokafka.state import changelog_topic
from eokafka.topology import Topology

if TYPE_CHECKING:  # optional parts: imported when an app (or a bounded run) has them
    from eokafka.runtime.process.bounded import BoundedRun, Bounds
    from eokafka.runtime.process.global_tables import GlobalTables
    from eokafka.runtime.tasks.standby import StandbyReplicas
    from eokafka.runtime.tasks.wall_clock import WallClock

_PATIENCE_S = 120.0  # a broker that restarts takes seconds; one that is gone, for ever


@dataclass
class Parts:
    topics: TopicGuard
    owner: TransactionOwner
    ctx: ProcessorContext
    consumer: Consumer
    tasks: TaskManager
    loader: StoreLoader | None
    standby: StandbyReplicas | None
    abort_loop: AbortLoop
    poison: PoisonPolicy
    sinks: SinkSet
    processing: Processing
    rebalance: Rebalance
    bound: BoundedRun | None
    wall_clock: WallClock | None = None  # wall-clock timers and idle windows, if any
    global_tables: GlobalTables | None = None  # the app's global tables, if any


def build(
    topology: Topology,
    settings: Settings,
    instance_id: str,
    metrics: WorkerMetrics,
    bounds: Bounds | None,
    clients: Clients,
    query_url: str | None = None,
) -> Parts:
    """Every part of a worker, wired; nothing talks to the broker yet (``Worker.start``).
    ``query_url``: this worker's query server, advertised to the group in the client.id."""
    check_sinks(topology)
    app_id = settings.application_id
    admin = clients.admin(admin_config(settings))
    topics = TopicGuard(admin, settings.create_topics)
    limits = OutputLimits(producer_config(settings, instance_id), topics.configs)
    owner = TransactionOwner(settings, instance_id, metrics, clients, bool(topology.stores))

    def check_topic(topic: str) -> None:
        """First send to a topic: check it exists and read the limits it puts on records."""
        topics.ensure(topic, "output")
        limits.learn(topic)

    ctx = ProcessorContext(check_topic, owner.tally.dropped, owner.tally.late)
    collector = RecordCollector(settings, owner, limits, ctx.pending)
    conf = consumer_config(settings, instance_id, spans_topics(topology), query_url)
    ordered = settings.max_task_idle_ms >= 0 and spans_topics(topology)
    if (bounds is not None and bounds.until_end) or ordered:
        # a bounded run's position passes end markers; a task's queue learns an input has
        # nothing older coming (tasks/ordering.py)
        conf["enable.partition.eof"] = True
    with config_errors():
        consumer = clients.consumer(conf)

    loader = reader = standby = None
    if topology.stores:
        changelogs = {name: changelog_topic(app_id, name) for name in topology.stores}
        loader = StoreLoader(
            settings, topology.stores, changelogs, metrics, topics, limits.record_limit
        )
        reader = ChangelogReader(
            lambda: clients.restore_consumer(restore_consumer_config(settings)),
            changelogs, metrics, restoring=True,
        )  # fmt: skip
        if settings.num_standby_replicas >= 1:
            from eokafka.runtime.tasks.standby import StandbyReplicas

            standby = StandbyReplicas(
                settings, topology, metrics, admin, instance_id, consumer.memberid, clients
            )
            loader.standby = standby
    tasks = TaskManager(
        topology, consumer, metrics, app_id, loader, reader, clients.clock,
        max_task_idle_ms=settings.max_task_idle_ms,
    )  # fmt: skip
    # How long the broker may take to answer for offsets: a previous owner's open
    # transaction holds them up to its transaction timeout.
    patience = max(_PATIENCE_S, 3 * settings.transaction_timeout_ms / 1000)
    task_commits = TaskCommits(tasks, metrics, collector.changelog, patience)

    abort_loop = AbortLoop(metrics)
    routes_of = processors_of(topology)
    poison = PoisonPolicy(
        settings, owner.tally, limits, abort_loop, collector.dead_letter, tasks.marks_of,
        tasks.position_map, tasks.committed_offsets, routes_of, lambda: owner.records,
        topology.error_policies(settings.on_error),
    )  # fmt: skip
    sinks = SinkSet(
        topology.sinks, app_id, instance_id,
        committed=lambda tps: consumer.committed(tps, timeout=30.0),
        seek=consumer.seek,
        assignment=lambda: tasks.assignment,
        refused=lambda refused: poison.sink_refused(refused, routes_of(refused.record[0])),
        kafka_writes=lambda: {**owner.tally.produced, **owner.tally.dead_lettered},
    )  # fmt: skip
    ctx.bind_sinks(sinks.writer)
    purge = RepartitionPurge(
        admin, set(topology.internal_topics), settings.purge_interval_ms / 1000
    )
    bound = None
    if bounds is not None:
        from eokafka.runtime.process.bounded import BoundedRun

        bound = BoundedRun(bounds, topology, settings, owner, tasks, consumer, topics,
                           clients.clock)  # fmt: skip
    for participant in (task_commits, sinks, poison, purge, bound):
        if participant is not None:
            owner.register(participant)

    processing = Processing(
        topology, ctx, owner, collector, poison, sinks, abort_loop, metrics,
        lambda msg: consumer_error(msg, app_id, instance_id),
    )  # fmt: skip

    def replan() -> None:
        """After any change of tasks: standbys only for partitions with no task here."""
        if standby is not None:
            standby.replan(tasks.indexes())

    rebalance = Rebalance(
        rebalance_protocol(settings), settings.auto_offset_reset, owner, tasks, sinks, poison,
        metrics, replan, consumer, app_id, patience,
    )  # fmt: skip
    global_tables = None
    if topology.global_tables:
        from eokafka.runtime.process.global_tables import GlobalTables

        global_tables = GlobalTables(
            topology.global_tables,
            lambda: clients.restore_consumer(global_consumer_config(settings, instance_id)),
            metrics,
        )
        ctx.bind_globals(global_tables.stores)
    wall_clock = None
    if topology.timers or topology.idle_windows:
        from eokafka.runtime.tasks.wall_clock import WallClock

        wall_clock = WallClock(topology, tasks, ctx, owner, collector, clients.wall_ms)
    return Parts(
        topics, owner, ctx, consumer, tasks, loader, standby, abort_loop, poison, sinks,
        processing, rebalance, bound, wall_clock, global_tables,
    )  # fmt: skip
