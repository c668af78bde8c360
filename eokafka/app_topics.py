"""The topics an app reads and writes, and the partition count of each one to create.

``eokafka topics create --for module:app`` and ``eokafka run --create-topics`` create an app's
missing input, global table and output topics from one plan. Inputs that feed one store (a
join, an aggregation over several topics) are co-partitioned: partition p of each belongs to
one task, so they must have the same partition count; a plan refuses topics that already
differ, and gives a missing member its group's count. Every other missing topic gets the
stated count (``--partitions``), else the count the app's existing inputs share, else the
broker's default (``num.partitions``), and the plan says which. Outputs are the topics
processors declare (``outputs=``, the DSL's ``to``). Internal topics (changelogs, repartition
topics, the dead-letter topic) are not in the plan: the workers create them at start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from eokafka.errors import TopologyError
from eokafka.topology import Topology

BROKER_DEFAULT = -1  # NewTopic's num_partitions for the broker's num.partitions


@dataclass(frozen=True)
class TopicPlan:
    """What becomes of the app's topics: kept as they are, or created with a count."""

    roles: dict[str, str]  # topic -> "input", "global table" or "output", in the app's order
    existing: dict[str, int]  # topic -> its partition count
    create: dict[str, int] = field(default_factory=dict)  # topic -> count (or BROKER_DEFAULT)
    why: dict[str, str] = field(default_factory=dict)  # topic -> where its count comes from


def count_text(n: int) -> str:
    """"1 partition", "4 partitions"."""
    return f"{n} partition{'s' if n != 1 else ''}"


def app_topics(topology: Topology) -> dict[str, str]:
    """The app's own inputs, global tables' topics and declared outputs (internal topics
    left out), by role."""
    internal = set(topology.internal_topics)
    roles = {t: "input" for t in topology.topics if t not in internal}
    for topic in topology.global_topics().values():  # read in full: any partition count
        roles[topic] = "global table"
    for source in topology.sources:
        for out in source.outputs:
            if out not in internal:
                roles.setdefault(out, "output")
    return roles


def _groups(topology: Topology) -> list[set[str]]:
    """Co-partitioned input topics, a repartition topic standing for the topic it follows."""
    from eokafka.runtime.tasks.groups import copartitioned_groups

    follow = topology.internal_topics
    seen: list[set[str]] = []
    for group in set(copartitioned_groups(topology).values()):
        members = {follow.get(t, t) for t in group}
        if len(members) > 1 and members not in seen:
            seen.append(members)
    return seen


def plan_topics(
    topology: Topology, counts: Mapping[str, int | None], partitions: int | None = None
) -> TopicPlan:
    """The plan for the app's topics, given each one's partition count (None: missing).

    Raises TopologyError when co-partitioned inputs have different counts, or when
    ``partitions`` would give a missing one a count other than its group's.
    """
    topology.validate()  # the stores a pipeline reads, which make topics co-partitioned
    roles = app_topics(topology)
    existing = {t: n for t, n in counts.items() if n is not None and t in roles}
    plan = TopicPlan(roles, existing)
    group_of: dict[str, tuple[int, str]] = {}  # missing topic -> (its group's count, why)
    for group in _groups(topology):
        found = {t: existing[t] for t in sorted(group) if t in existing}
        if len(set(found.values())) > 1:
            listed = ", ".join(f"{t} ({count_text(n)})" for t, n in found.items())
            raise TopologyError(
                f"input topics {listed} share a store, so partition p of each belongs to one "
                "task: they need the same partition count. Re-create the smaller ones (or "
                "repartition them into new topics) with the same count"
            )
        if found:
            topic, n = next(iter(found.items()))
            for missing in group - set(existing):
                group_of[missing] = (n, f"like {topic}, with which it shares a store")
    inputs = {n for t, n in existing.items() if roles[t] == "input"}
    for topic in roles:
        if topic in existing:
            continue
        if topic in group_of:
            n, why = group_of[topic]
            if partitions is not None and partitions != n:
                raise TopologyError(
                    f"--partitions {partitions}: {roles[topic]} topic {topic} must have "
                    f"{count_text(n)}, {why}"
                )
        elif partitions is not None:
            n, why = partitions, "--partitions"
        elif len(inputs) == 1:
            n, why = next(iter(inputs)), "as the app's existing inputs"
        else:
            n, why = BROKER_DEFAULT, "the broker's num.partitions; give --partitions N to choose"
            if inputs:
                why = "the broker's num.partitions, as the app's inputs differ; give --partitions N"
        plan.create[topic] = n
        plan.why[topic] = why
    return plan


def default_partitions(plan: TopicPlan) -> int:
    """The count for topics the app creates later (outputs it did not declare)."""
    counts = set(plan.create.values()) | {
        n for t, n in plan.existing.items() if plan.roles[t] == "input"
    }
    counts.discard(BROKER_DEFAULT)
    return counts.pop() if len(counts) == 1 else BROKER_DEFAULT


def count_topics(
    topology: Topology, partitions_of: Callable[[str], int | None]
) -> dict[str, int | None]:
    """Each of the app's topics' partition count (None: missing), read one by one."""
    return {topic: partitions_of(topic) for topic in app_topics(topology)}


class TopicCreator(Protocol):
    """What ``create_missing`` needs of the worker's view of its topics (runtime/topics.py)."""

    new_partitions: int

    def partitions(self, topic: str) -> int | None: ...

    def ensure(self, topic: str, role: str, partitions: int = -1, *, why: str = "") -> bool: ...


def create_missing(topics: TopicCreator, topology: Topology, partitions: int | None) -> None:
    """``--create-topics``: create the app's missing inputs and outputs as planned (each
    logged with its count and why), and give topics created later the app's count."""
    plan = plan_topics(topology, count_topics(topology, topics.partitions), partitions)
    for topic, count in plan.create.items():
        topics.ensure(topic, plan.roles[topic], count, why=f" ({plan.why[topic]})")
    topics.new_partitions = default_partitions(plan)
