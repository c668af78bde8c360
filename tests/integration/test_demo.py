"""The README's demo (``python -m examples.demo``) prints its own lines only: nothing on
stderr, no librdkafka line anywhere, and ``demo OK`` at the end.

It starts a broker of its own, as the README's command does, on free ports and in a home of
its own (``EOKAFKA_BROKER_HOME``), with fewer orders to keep it short.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from eokafka.devbroker import stop_broker
from tests.conftest import _free_port_pair
from tests.integration.harness import REPO
from tests.integration.test_operations import _free_port

pytestmark = pytest.mark.integration
LIBRDKAFKA_LINE = re.compile(r"%\d\|\d+\.\d+\||rdkafka#|\|FAIL\||GETPID")


def test_the_demo_prints_nothing_on_stderr(tmp_path: Path) -> None:
    home = tmp_path / "home" / "broker"  # the demo's broker lives beside it: demo-broker
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOKAFKA_")}
    env["EOKAFKA_BROKER_HOME"] = str(home)
    args = ["--port", str(_free_port_pair()), "--metrics-port", str(_free_port()),
            "--orders", "200"]  # fmt: skip
    try:
        done = subprocess.run(
            [sys.executable, "-m", "examples.demo", *args],
            cwd=REPO, env=env, capture_output=True, text=True,
            timeout=600,  # a bound on a hang (a broker's first start), not a measure
        )  # fmt: skip
    finally:
        stop_broker(home.parent / "demo-broker")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    assert "demo OK: every order enriched exactly once" in done.stdout
    assert not LIBRDKAFKA_LINE.search(done.stdout), done.stdout
