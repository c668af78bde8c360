"""``eokafka verify --follow`` behind a running PostgreSQL sink: a row deleted at the
destination is found by the next check, and the Prometheus metrics (read over HTTP) say so."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
import requests

from tests.integration.connectors.pg_helpers import inputs, new_table
from tests.integration.harness import REPO, app_topics, wait_for, worker
from tests.integration.test_operations import _free_port, _samples
from tests.kafka_helpers import produce_records

pytestmark = pytest.mark.integration
LIVENESS = 180  # seconds: a generous bound on a loaded machine, not a timing assertion


def _metrics(port: int) -> dict[str, float]:
    """The monitor's samples over HTTP, by name (and labels, as ``name{k="v"}``)."""
    return {
        name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else ""): value
        for (name, labels), value in _samples(port).items()
        if name.startswith("eokafka_verify_")
    }


def _scrape(port: int) -> dict[str, float]:
    try:
        return _metrics(port)
    except requests.RequestException:
        return {}  # not serving yet


def test_follow_finds_a_row_deleted_behind_a_running_sink(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    names = app_topics(kafka_bootstrap, "follow", partitions=2)
    table = new_table(postgres_dsn)
    env = {**names.env, "TEST_PG_DSN": postgres_dsn, "TEST_PG_TABLE": table}
    stop = threading.Event()

    def feed() -> None:
        n = 0
        while not stop.wait(0.2):  # pacing the producer, not waiting for a state
            produce_records(kafka_bootstrap, names.src, inputs(range(n, n + 20)))
            n += 20

    feeder = threading.Thread(target=feed, daemon=True)
    w = worker("tests.apps.pg_sink:app", kafka_bootstrap, tmp_path, "w", env,
               ["--instance-id", "a"])
    port = _free_port()
    args = [sys.executable, "-m", "eokafka", "verify", names.src, f"postgres:{table}",
            "--dsn", postgres_dsn, "--bootstrap-servers", kafka_bootstrap, "--fields", "amount",
            "--group", names.app_id, "--open-wait", "5"]
    penv = {**os.environ, "PYTHONUNBUFFERED": "1"}
    monitor = None
    try:
        feeder.start()
        w.start()
        wait_for(lambda: len(_rows(postgres_dsn, table)) >= 100, LIVENESS, "the sink to write")
        with open(tmp_path / "follow.log", "wb") as log:
            monitor = subprocess.Popen(
                [*args, "--follow", "--interval", "1", "--metrics-port", str(port)],
                cwd=REPO, env=penv, stdout=log, stderr=subprocess.STDOUT,
            )
        wait_for(lambda: _scrape(port).get("eokafka_verify_ok") == 1.0, LIVENESS,
                 "a first check that finds the sync right")
        before = _metrics(port)
        checked = {p: before[f'eokafka_verify_checked_offset{{partition="{p}"}}'] for p in "01"}
        assert before["eokafka_verify_records_checked"] > 0
        victim = next(
            (i, s) for i, s in _rows(postgres_dsn, table)
            if int(s.split(":")[1]) < checked[s.split(":")[0]]
        )
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f"DELETE FROM {table} WHERE id = %s", (victim[0],))
        deleted_at = _metrics(port)["eokafka_verify_checks_total"]
        # The check running now may have read the table before the delete; the next can't.
        wait_for(lambda: _scrape(port).get("eokafka_verify_checks_total", 0) >= deleted_at + 2,
                 LIVENESS, "two more checks")
        after = _metrics(port)
        assert after['eokafka_verify_differences{kind="missing"}'] == 1.0, after
        assert after["eokafka_verify_ok"] == 0.0 and after["eokafka_verify_failing_checks"] >= 1
        assert {f'eokafka_verify_lag_records{{partition="{p}"}}' for p in "01"} <= after.keys()
        monitor.send_signal(signal.SIGTERM)
        assert monitor.wait(LIVENESS) == 0
        text = (tmp_path / "follow.log").read_text()
        assert re.search(r"missing 1, .*DIFFERENCES FOUND \(1 checks in a row\)", text), text

        failing = subprocess.run([*args, "--follow", "--interval", "1", "--fail-after", "2"],
                                 cwd=REPO, env=penv, capture_output=True, text=True,
                                 timeout=LIVENESS)
        assert failing.returncode == 1, failing.stdout + failing.stderr
        assert "a difference lasted 2 checks in a row" in failing.stdout
        assert f"{victim[0]}" not in {str(i) for i, _ in _rows(postgres_dsn, table)}
    finally:
        stop.set()
        feeder.join(60)
        if monitor is not None and monitor.poll() is None:
            monitor.kill()
            monitor.wait(30)
        w.stop_quietly()


def _rows(dsn: str, table: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT id, src FROM {table} ORDER BY id").fetchall()
