"""``eokafka verify``: is every record of a source at the destination exactly once, unchanged?

The source is a Kafka topic read read_committed (JSON values); the destination a Kafka
topic (``kafka:<topic>``, read as a table when it is compacted), a PostgreSQL table
(``postgres:<table>`` with ``--dsn``) or a folder of JSON Lines / CSV files
(``files:<folder>``). Records without a readable id, on either side, are counted and named,
and fail the check unless ``allow_unkeyed``.

With the sink's consumer ``group``, a sync that is running can be checked: see
``eokafka.verify.line`` for the line it checks up to, and for the order in which the line,
the destination and the source are read so that no record is taken for missing or extra
while the sink writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from eokafka.errors import ConfigError
from eokafka.verify.compare import Findings, Report, compare
from eokafka.verify.line import Line, committed_line, lower_for_file_parts, wait_for_prepared
from eokafka.verify.progress import NO_PROGRESS, Progress
from eokafka.verify.readers import (
    end_offsets,
    files_side,
    finished_parts,
    is_compacted,
    kafka_side,
    open_transactions,
    postgres_side,
    settled_ends,
)
from eokafka.verify.records import Side

__all__ = ["CheckOptions", "Checked", "Report", "Target", "check", "verify"]


@dataclass(frozen=True)
class Target:
    """A destination: ``kafka:<topic>``, ``postgres:<table>`` or ``files:<folder>``."""

    kind: str
    where: str

    @classmethod
    def parse(cls, destination: str) -> Target:
        kind, sep, where = destination.partition(":")
        if not sep or not where:
            raise ConfigError(
                f"destination {destination!r}: kafka:<topic>, postgres:<table> or files:<folder>"
            )
        if kind not in ("kafka", "postgres", "files"):
            raise ConfigError(f"destination kind {kind!r}: kafka, postgres or files")
        return cls(kind, where)

    def __str__(self) -> str:
        return f"{self.kind}:{self.where}"


@dataclass(frozen=True)
class CheckOptions:
    """What to compare, and how (the options of ``eokafka verify``)."""

    bootstrap: str
    source: str
    destination: str
    id_field: str = "id"
    fields: Sequence[str] = ()
    dsn: str | None = None
    buckets: int = 16
    open_wait: float = 10.0
    allow_unkeyed: bool = False
    group: str | None = None  # the sink's consumer group: check below its committed offsets
    prepared_wait: float = 30.0

    @property
    def target(self) -> Target:
        return Target.parse(self.destination)


@dataclass
class Checked:
    """A check's report, every difference found, and the sides as they were read."""

    report: Report
    findings: Findings
    source: Side
    destination: Side
    line: Line | None
    parts: list[Path] = field(default_factory=list)  # files: the finished parts read


def check(opts: CheckOptions, progress: Progress = NO_PROGRESS) -> Checked:
    """Compare; in this order: the sink's line, the destination's snapshot, the source's end.

    A record below the line is visible at the destination before its snapshot is taken; a
    destination record is from a source record written before the source's end is fixed.
    """
    target = opts.target
    fields = list(opts.fields)
    if target.kind == "postgres" and not opts.dsn:
        raise ConfigError("a postgres: destination needs --dsn (a libpq connection string)")
    line = None
    if opts.group is not None:
        partitions = sorted(end_offsets(opts.bootstrap, opts.source))
        line = committed_line(opts.bootstrap, opts.group, opts.source, partitions)
    with ExitStack() as stack:
        parts: list[Path] = []
        hanging: list[dict[str, object]] = []
        if target.kind == "kafka":
            compacted = is_compacted(opts.bootstrap, target.where)
            settled, hanging = settled_ends(opts.bootstrap, target.where, opts.open_wait)
            dest = kafka_side(opts.bootstrap, target.where, opts.id_field, fields, compacted,
                              target=settled)
        elif target.kind == "postgres":
            assert opts.dsn is not None
            if line is not None:
                wait_for_prepared(opts.dsn, target.where, opts.prepared_wait)
            dest = postgres_side(opts.dsn, target.where, opts.id_field, fields)
        else:
            if line is not None:
                lower_for_file_parts(line, target.where)
            parts = finished_parts(target.where)
            dest = files_side(target.where, opts.id_field, fields, parts)
        stack.callback(dest.close)
        ends = end_offsets(opts.bootstrap, opts.source)
        source = kafka_side(opts.bootstrap, opts.source, opts.id_field, fields, target=ends)
        report = Report(f"kafka:{opts.source}", str(target), opts.id_field, fields,
                        opts.allow_unkeyed)
        if line is not None:
            report.group = line.group
            report.checked_up_to = line.as_list(ends)
        report.open_transactions = [
            *open_transactions(opts.bootstrap, opts.source, opts.open_wait), *hanging
        ]
        findings = Findings()
        compare(report, source, dest, opts.buckets,
                in_flight=None if line is None else line.in_flight,
                findings=findings, progress=progress)
    return Checked(report, findings, source, dest, line, parts)


def verify(
    bootstrap: str,
    source: str,
    destination: str,
    id_field: str = "id",
    fields: Sequence[str] = (),
    dsn: str | None = None,
    buckets: int = 16,
    open_wait: float = 10.0,
    allow_unkeyed: bool = False,
    group: str | None = None,
    prepared_wait: float = 30.0,
) -> Report:
    """Check ``destination`` against ``source``; see :func:`check`."""
    opts = CheckOptions(bootstrap, source, destination, id_field, tuple(fields), dsn, buckets,
                        open_wait, allow_unkeyed, group, prepared_wait)
    return check(opts).report
