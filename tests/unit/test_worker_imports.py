"""A worker's start-up imports only what it uses: the modules below load when an app or a
setting needs them (an Avro serde, a persistent store, a query server, several processes,
a metrics scrape), never for a plain worker."""

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
)  # fmt: skip


def test_a_plain_worker_imports_none_of_them(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "import eokafka.cli, eokafka.cli_run_start\n"
        "import eokafka.runtime.process.supervisor, eokafka.runtime.process.worker\n"
        "import eokafka.runtime.process.preflight, benchmarks.apps.count_bench\n"
        f"print(sorted(m for m in {NOT_FOR_A_PLAIN_WORKER!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
