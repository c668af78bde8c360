"""PostgreSQL connectors: a sink, exactly once with the Kafka commit (two-phase or offsets in
the database), and an outbox source. Needs the ``postgres`` extra (psycopg 3)."""

from connectors.postgres.sink import PostgresSink, SinkRefused
from connectors.postgres.source import PostgresSource
from connectors.postgres.table import RowError

__all__ = ["PostgresSink", "PostgresSource", "RowError", "SinkRefused"]
