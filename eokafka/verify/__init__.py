"""``eokafka verify``: is every record of a source at the destination exactly once, unchanged?

The source is a Kafka topic read read_committed (JSON values); the destination a Kafka
topic (``kafka:<topic>``), a PostgreSQL table (``postgres:<table>`` with ``--dsn``) or a
folder of JSON Lines / CSV files (``files:<folder>``). Records without a readable id, on
either side, are counted and named, and fail the check unless ``allow_unkeyed``.
"""

from __future__ import annotations

from collections.abc import Sequence

from eokafka.errors import ConfigError
from eokafka.verify.compare import Report, compare
from eokafka.verify.readers import files_side, kafka_side, open_transactions, postgres_side

__all__ = ["Report", "verify"]


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
) -> Report:
    kind, sep, where = destination.partition(":")
    if not sep or not where:
        raise ConfigError(
            f"destination {destination!r}: kafka:<topic>, postgres:<table> or files:<folder>"
        )
    fields = list(fields)
    if kind == "kafka":
        dest = kafka_side(bootstrap, where, id_field, fields)
    elif kind == "postgres":
        if not dsn:
            raise ConfigError("a postgres: destination needs --dsn (a libpq connection string)")
        dest = postgres_side(dsn, where, id_field, fields)
    elif kind == "files":
        dest = files_side(where, id_field, fields)
    else:
        raise ConfigError(f"destination kind {kind!r}: kafka, postgres or files")
    report = Report(f"kafka:{source}", destination, id_field, fields, allow_unkeyed)
    hanging = open_transactions(bootstrap, source, open_wait)
    if kind == "kafka":
        hanging += open_transactions(bootstrap, where, open_wait)
    report.open_transactions = hanging
    return compare(report, kafka_side(bootstrap, source, id_field, fields), dest, buckets)
