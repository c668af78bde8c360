"""A worker's start-up imports only what it uses: the modules below load when an app or a
setting needs them (an Avro serde, a persistent store, a query server, several processes,
a metrics port or scrape, topics to create, sources, global tables, standbys, wall-clock
timers, a static member's leave, a bounded run), never for a plain worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_FOR_A_PLAIN_WORKER = (
    "typer", "pydantic", "fastavro", "sqlite3", "rocksdict", "psycopg", "aiohttp",
    "multiprocessing", "importlib.metadata", "eokafka.runtime.query.desk",
    "eokafka.state.rocks", "eokafka.state.sqlite", "eokafka.serdes.avro",
    "prometheus_client", "http.server", "eokafka.describe", "eokafka.runtime.group.wire", "hashlib",
    "eokafka.app_topics", "eokafka.runtime.process.sources",
    "eokafka.runtime.process.global_tables", "eokafka.runtime.tasks.standby",
    "eokafka.runtime.tasks.wall_clock", "eokafka.runtime.process.bounded",
)  # fmt: skip


def _probe(tmp_path: Path, code: str) -> str:
    """What ``code`` prints, run in a fresh interpreter with this tree first on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_plain_worker_imports_none_of_them(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "import eokafka.cli, eokafka.cli_run_start\n"
        "import eokafka.runtime.process.supervisor, eokafka.runtime.process.worker\n"
        "import eokafka.runtime.process.preflight, benchmarks.apps.count_bench\n"
        f"print(sorted(m for m in {NOT_FOR_A_PLAIN_WORKER!r} if m in sys.modules))\n"
    )
    assert _probe(tmp_path, probe) == "[]"


def test_metrics_are_kept_only_where_something_serves_them(tmp_path: Path) -> None:
    """No metrics port and no query server: nothing can read the worker's metrics, so they
    are dropped without importing prometheus_client; either port: a registry with them."""
    probe = (
        "import sys\n"
        "from eokafka.config import Settings\n"
        "from eokafka.metrics import TxnTally\n"
        "from eokafka.runtime.process.supervisor import worker_metrics\n"
        "tally = TxnTally()\n"
        "tally.consumed['in'] += 3\n"
        "for ports in ({}, {'metrics_port': 9400}, {'http_port': 9500}):\n"
        "    s = Settings(application_id='a', bootstrap_servers='b', **ports)\n"
        "    m = worker_metrics(s, 'i')\n"
        "    m.publish(tally)\n"
        "    m.commit_latency.observe(0.01)\n"
        "    m.lag.labels('in', '0').set(5)\n"
        "    m.forget_partitions([('in', 0)])\n"
        "    value = None\n"
        "    if m.served:\n"
        "        value = m.registry.get_sample_value(\n"
        "            'eokafka_records_consumed_total', {'topic': 'in'})\n"
        "    print(sorted(ports), m.served, value, 'prometheus_client' in sys.modules)\n"
    )
    assert _probe(tmp_path, probe).splitlines() == [
        "[] False None False",
        "['metrics_port'] True 3.0 True",
        "['http_port'] True 3.0 True",
    ]
