"""The PostgreSQL sink on a real broker and a real PostgreSQL, run by real worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.connectors.pg_helpers import (
    TARGET,
    assert_rows_exactly_once,
    inputs,
    new_table,
    prepared,
    rows,
)
from tests.integration.harness import app_topics, wait_for, worker
from tests.kafka_helpers import produce_records, read_committed

pytestmark = pytest.mark.integration


def test_two_phase_rows_and_kafka_output_exactly_once(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    total = 5_000
    names = app_topics(kafka_bootstrap, "pg2pc", partitions=2)
    table = new_table(postgres_dsn)
    env = {**names.env, "TEST_PG_DSN": postgres_dsn, "TEST_PG_TABLE": table}
    produce_records(kafka_bootstrap, names.src, inputs(range(total)))
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "a"]).start()
    try:
        wait_for(lambda: len(rows(postgres_dsn, table)) >= total, 120, "all rows")
        assert_rows_exactly_once(postgres_dsn, table, range(total))
        out = read_committed(kafka_bootstrap, names.out, expected_count=total)
        assert len(out) == total
        assert w.terminate() == 0, w.log()[-3000:]
        assert not [g for g in prepared(postgres_dsn) if names.app_id in g]
    finally:
        w.stop_quietly()
