"""Which input topics must be served together: those that share a store, transitively."""

from __future__ import annotations

from eokafka.topology import Topology


def copartitioned_groups(topology: Topology) -> dict[str, frozenset[str]]:
    """Each input topic's group: the topics it shares a store with, transitively."""
    by_topic = topology.store_names_by_topic()
    group = {topic: {topic} for topic in topology.topics}
    for store in topology.stores:
        users = [t for t, names in by_topic.items() if store in names and t in group]
        merged = set().union(*(group[t] for t in users)) if users else set()
        for topic in merged:
            group[topic] = merged
    return {topic: frozenset(topics) for topic, topics in group.items()}


def spans_topics(topology: Topology) -> bool:
    """Whether some store (a join, a multi-topic aggregation) is fed by two input topics:
    then only an assignor that keeps partition p of each topic on one member will do."""
    return any(len(g) > 1 for g in copartitioned_groups(topology).values())
