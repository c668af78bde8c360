"""``eokafka verify --repair``: make a destination agree with its source, safely while it syncs.

A repair checks (``eokafka.verify.check``), builds a plan from every difference found
(``plan.py``), lets the destination fetch and shape what it will write, and, when asked
(``apply``, the ``--yes`` flag), carries it out in one atomic step per destination: one
PostgreSQL transaction, one Kafka transaction, or one atomic rename per file.

Safe while the sink runs: with the sink's consumer group (``--group`` or ``--app``), only
records below the offsets it committed are checked and repaired, and a committed record is
never written by the sink again (invariant 12), so the repair neither races the sink into a
duplicate nor undoes a write it is about to make; see ``eokafka.verify.line`` for the two
sinks whose writes become visible a little after their commit. Each destination also holds
a lock from before the check to the end of the repair, so two repairs never overlap.
Without a group, the whole source is expected at the destination: stop the sink first.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

from eokafka.sink import Sink
from eokafka.verify import Checked, CheckOptions, Report, check
from eokafka.verify.progress import NO_PROGRESS, Progress
from eokafka.verify.readers import is_compacted
from eokafka.verify.repair.build import build_plan
from eokafka.verify.repair.plan import Capabilities, Done, Plan

__all__ = ["Done", "Plan", "Repaired", "RepairOptions", "repair"]


@dataclass(frozen=True)
class RepairOptions:
    apply: bool = False  # carry the plan out (--yes); else only show it
    delete_extra: bool = False
    delete_unkeyed: bool = False


@dataclass
class Repaired:
    """A repair's check, its plan, and what it did (None for a plan only)."""

    report: Report
    plan: Plan
    done: Done | None

    def as_dict(self) -> dict[str, object]:
        return {
            "report": self.report.as_dict(),
            "plan": self.plan.as_dict(),
            "done": None if self.done is None else self.done.as_dict(),
        }


class Repairer(Protocol):
    can: Capabilities

    def exclusive(self) -> AbstractContextManager[None]: ...

    def unguarded(self) -> None:
        """Without the sink's group: make sure no write of a sink is still on its way."""

    def prepare(self, plan: Plan, checked: Checked, progress: Progress) -> None: ...

    def apply(self, plan: Plan, progress: Progress) -> Done: ...


def _repairer(opts: CheckOptions, sinks: Mapping[str, Sink]) -> Repairer:
    target = opts.target
    if target.kind == "postgres":
        from eokafka.verify.repair.postgres import PostgresRepair, find_sink

        return PostgresRepair(opts, find_sink(sinks, target.where))
    if target.kind == "files":
        from eokafka.verify.repair.files import FilesRepair

        return FilesRepair(opts, sinks)
    from eokafka.verify.repair.kafka import KafkaRepair

    return KafkaRepair(opts, is_compacted(opts.bootstrap, target.where))


def repair(
    check_opts: CheckOptions,
    opts: RepairOptions,
    sinks: Mapping[str, Sink] | None = None,
    progress: Progress = NO_PROGRESS,
) -> Repaired:
    """Check, plan, and (with ``opts.apply``) repair; ``sinks`` are the app's, by name."""
    repairer = _repairer(check_opts, sinks or {})
    with repairer.exclusive() if opts.apply else nullcontext():
        if check_opts.group is None:
            repairer.unguarded()
        checked = check(check_opts, progress)
        plan = build_plan(checked, repairer.can, opts.delete_extra, opts.delete_unkeyed)
        repairer.prepare(plan, checked, progress)
        done = None
        if opts.apply and plan.changes:
            done = repairer.apply(plan, progress)
        elif opts.apply:
            done = Done()
    return Repaired(checked.report, plan, done)
