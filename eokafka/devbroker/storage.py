"""Formatting a home's KRaft storage (a new cluster id, and a secured home's SCRAM users)."""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from eokafka.devbroker.errors import BrokerError
from eokafka.devbroker.home import Layout
from eokafka.devbroker.jars import tail
from eokafka.devbroker.process import classpath, log4j_opts
from eokafka.devbroker.security import scram_format_args

_FORMAT_TIMEOUT_S = 120.0


def new_cluster_id() -> str:
    """Same format as ``kafka-storage random-uuid``, without paying for a JVM start."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):  # would be parsed as a CLI flag
            return cluster_id


def format_storage(java: str, libs: Path, layout: Layout) -> None:
    """Format the home's storage for a new single-node cluster, with its SCRAM users."""
    scram = scram_format_args(layout)
    cmd = [
        java, *log4j_opts(layout), "-cp", classpath(libs), "kafka.tools.StorageTool",
        "format", "-t", new_cluster_id(), "-c", str(layout.server_properties), *scram,
    ]
    try:
        proc = subprocess.run(
            cmd, cwd=layout.home, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=_FORMAT_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"Formatting {layout.log_dirs} timed out; see {layout.log_file}") from exc
    if proc.returncode != 0:
        raise BrokerError(
            f"Formatting the broker storage in {layout.log_dirs} failed (exit {proc.returncode}); "
            f"retry with fresh=True (eokafka broker start --fresh) to wipe it. "
            f"Output:\n{tail(proc.stdout + proc.stderr)}"
        )
