"""The changelog topics of an app's stores: created at start, or checked if they exist.

A changelog must keep the last record of every key, and have as many partitions as the
topics its store serves: a mismatch is an error that names the topic and what to do.
"""

from __future__ import annotations

from eokafka.errors import ConfigError, TopologyError
from eokafka.runtime.topics import TopicGuard
from eokafka.state import StoreSpec
from eokafka.topology import Topology


def ensure_changelogs(topics: TopicGuard, topology: Topology, changelogs: dict[str, str]) -> None:
    """Create each changelog (compacted, as many partitions as its sources) or check it."""
    for name, topic in changelogs.items():
        counts = {
            src: topics.partitions(src)
            for src, names in topology.store_names_by_topic().items()
            if name in names
        }
        if len(set(counts.values())) > 1:
            raise TopologyError(
                f"store {name!r} is used by topics with different partition counts {counts} "
                "(they are joined, or feed one store): partition p of each must hold the same "
                "keys, so co-partition them (same partition count, same key partitioning) first"
            )
        wanted = next(iter(counts.values()), None) or 1
        have = topics.partitions(topic)
        if have is None:
            config = topology.stores[name].changelog_config()
            topics.ensure(topic, "changelog", wanted, internal=True, config=config)
        elif have != wanted:
            raise TopologyError(
                f"changelog topic {topic!r} has {have} partitions but its source topics "
                f"have {wanted}; delete it (the state is rebuilt from the inputs only if "
                "you reprocess them) or repartition the sources"
            )
        else:
            _check_changelog_config(topics, topology.stores[name], name, topic)

def _check_changelog_config(
    topics: TopicGuard, spec: StoreSpec, name: str, topic: str
) -> None:
    """An existing changelog must keep the last record of every key: compacted, and if
    it also deletes by time, then only after a window store's windows are closed (a
    key-value store's: never)."""
    found = topics.configs(topic)
    policy = found.get("cleanup.policy", "")
    policies = {p.strip() for p in policy.split(",") if p.strip()}
    wanted = spec.changelog_config()["cleanup.policy"]
    window = spec.window_retention_ms
    if "compact" not in policies or not policies <= {"compact", "delete"}:
        raise ConfigError(
            f"changelog topic {topic!r} of store {name!r} has cleanup.policy={policy!r}, "
            f"expected {wanted!r}: without compaction the store would lose keys when old "
            "segments are deleted. Change it (kafka-configs --alter --entity-type topics "
            f"--entity-name {topic} --add-config cleanup.policy=[{wanted}]) or delete "
            "the topic"
        )
    if "delete" not in policies:
        return
    kept_ms = int(found.get("retention.ms", "-1"))
    if kept_ms >= 0 and (window is None or kept_ms < window):
        expected = "-1" if window is None else f"-1 or at least {window} (window plus grace)"
        raise ConfigError(
            f"changelog topic {topic!r} of store {name!r} has cleanup.policy={policy!r} "
            f"and retention.ms={kept_ms}, expected retention.ms={expected} (or "
            f"cleanup.policy={wanted!r}): records the store still needs would be deleted"
        )

