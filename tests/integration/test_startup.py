"""Start-up errors a new user meets: each is one clear message and a non-zero exit.

Real ``eokafka run`` processes; the output is read as the user would see it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import app_topics, worker
from tests.integration.test_operations import _free_port

pytestmark = pytest.mark.integration
COPY = "tests.apps.eos_copy:app"


def run_to_exit(
    target: str, bootstrap: str, tmp: Path, env: dict[str, str], extra: list[str]
) -> tuple[int, str]:
    """Run a worker that is expected to stop by itself; its exit code and output."""
    w = worker(target, bootstrap, tmp, "w", env, ["--instance-id", "w", *extra])
    try:
        w.start()
        code = w.wait(120)  # a bound on a hang, not a measured time
    finally:
        w.stop_quietly()
    return code, w.log()


def test_an_unreachable_broker_is_one_clear_error(kafka_bootstrap: str, tmp_path: Path) -> None:
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    env = {"TEST_APP_ID": "unreachable", "TEST_INPUT": "in", "TEST_OUTPUT": "out"}
    code, out = run_to_exit(COPY, address, tmp_path, env, [])
    assert code != 0
    assert "Traceback" not in out and "KafkaException" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    assert address in errors[0] and "bootstrap_servers" in errors[0]
    assert "Connection refused" in errors[0]  # what failed
    # librdkafka's reconnect attempts (many a second) go through logging, rate-limited.
    assert len(out.splitlines()) <= 10, out


def test_an_unknown_librdkafka_key_is_a_config_error(kafka_bootstrap: str, tmp_path: Path) -> None:
    names = app_topics(kafka_bootstrap, "badkey", 1)
    code, out = run_to_exit(COPY, kafka_bootstrap, tmp_path, names.env, ["-c", "no.such.key=1"])
    assert code != 0
    assert "Traceback" not in out
    wanted = (
        "error: librdkafka rejected the configuration: "
        'No such configuration property: "no.such.key"'
    )
    assert wanted in out, out
