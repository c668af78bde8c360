"""Where standby replicas live: a plan every worker computes alike from the group membership.

Members are put in a ring sorted by their stable name (``group.instance.id``, else
``client.id``, else the member id). A partition's standbys go to the next members after its
owner in that ring, skipping owners, so a partition's standby never lives on a worker that
owns it. With fewer members than ``replicas + 1`` a partition gets fewer standbys. Every
worker reads the same membership and so keeps exactly the standbys the plan puts on itself,
without any coordination of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Member:
    """One group member as placement sees it: its ring name and the partitions it owns."""

    name: str
    member_id: str
    partitions: frozenset[int]


def member_name(group_instance_id: str | None, client_id: str | None, member_id: str) -> str:
    """The name a member sorts by: stable across its restarts where the group says so."""
    return group_instance_id or client_id or member_id


def standby_plan(members: Iterable[Member], replicas: int) -> dict[int, tuple[str, ...]]:
    """For each owned partition index, the names of the members that keep its standbys."""
    ring = sorted({m.name for m in members})
    owners: dict[int, set[str]] = {}
    for m in members:
        for p in m.partitions:
            owners.setdefault(p, set()).add(m.name)
    plan: dict[int, tuple[str, ...]] = {}
    for p, owned_by in sorted(owners.items()):
        start = ring.index(min(owned_by))
        others = [ring[(start + i) % len(ring)] for i in range(1, len(ring))]
        plan[p] = tuple(n for n in others if n not in owned_by)[: max(0, replicas)]
    return plan


def standbys_of(members: Iterable[Member], member_id: str, replicas: int) -> set[int] | None:
    """The partition indexes whose standbys the plan puts on the member ``member_id``;
    None when that member is not in the group (yet)."""
    members = list(members)
    me = next((m for m in members if m.member_id == member_id), None)
    if me is None:
        return None
    return {p for p, names in standby_plan(members, replicas).items() if me.name in names}


def members_of(description: Any, topics: Iterable[str]) -> list[Member]:
    """Members and the partition indexes of ``topics`` they own, from a
    ``describe_consumer_groups`` result (classic and ``consumer`` group protocols alike:
    under the latter the target assignment is where partitions are going)."""
    wanted = set(topics)
    out: list[Member] = []
    for m in getattr(description, "members", None) or ():
        assignment = getattr(m, "target_assignment", None) or m.assignment
        tps = (assignment.topic_partitions if assignment is not None else None) or ()
        parts = frozenset(tp.partition for tp in tps if tp.topic in wanted)
        name = member_name(m.group_instance_id, m.client_id, m.member_id)
        out.append(Member(name, m.member_id, parts))
    return out
