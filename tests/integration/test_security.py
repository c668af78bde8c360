"""A worker against a SASL_SSL cluster, configured as a user would; secrets never printed.

The module starts its own secured dev broker (SCRAM-SHA-512 users made at format time, TLS
with a private CA), so the shared broker is untouched. The client settings are the ones the
broker start hands out: security.protocol, sasl.mechanism, sasl.username, sasl.password,
ssl.ca.location. The SCRAM password doubles as the planted secret: every line the worker
and ``describe`` print is scanned for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eokafka.devbroker import BrokerInfo, start_broker, stop_broker
from tests.conftest import _free_port_pair
from tests.integration.harness import REPO, app_topics, worker
from tests.kafka_helpers import CLIENT_SECURITY, produce_records, read_committed

pytestmark = pytest.mark.integration
N = 400
KEYS = 7


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerInfo]:
    home = tmp_path_factory.mktemp("sasl-ssl-broker")
    info = start_broker(port=_free_port_pair(), home=home, fresh=True, security="sasl-ssl")
    CLIENT_SECURITY[info.bootstrap] = dict(info.client_config)
    try:
        yield info
    finally:
        CLIENT_SECURITY.pop(info.bootstrap, None)
        stop_broker(home)


def _flags(config: dict[str, str]) -> list[str]:
    return [arg for key, value in config.items() for arg in ("--config", f"{key}={value}")]


def test_the_broker_hands_out_what_a_client_needs(secured: BrokerInfo) -> None:
    config = dict(secured.client_config)
    assert config.keys() == {
        "security.protocol", "sasl.mechanism", "sasl.username", "sasl.password",
        "ssl.ca.location",
    }  # fmt: skip
    assert (config["security.protocol"], config["sasl.mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert config["sasl.password"] not in repr(secured)
    assert secured.client_properties is not None
    assert oct(secured.client_properties.stat().st_mode & 0o777) == "0o600"


def test_a_worker_runs_exactly_once_over_sasl_ssl_and_never_prints_the_password(
    secured: BrokerInfo, tmp_path: Path
) -> None:
    config = dict(secured.client_config)
    secret = config["sasl.password"]
    names = app_topics(secured.bootstrap, "sec", 2)
    orders = [(f"k{i % KEYS}", {"id": i, "amount": i % 10 + 1}) for i in range(N)]
    produce_records(
        secured.bootstrap,
        names.src,
        [(k.encode(), json.dumps(v).encode()) for k, v in orders],
    )
    # A stateful app: the restore consumer needs the security settings too.
    run = worker(
        "tests.apps.totals:app", secured.bootstrap, tmp_path, "sec", names.env,
        ["--log-level", "DEBUG", *_flags(config)],
    )  # fmt: skip
    run.start()
    try:
        out = read_committed(secured.bootstrap, names.out, expected_count=N, timeout=180)
        assert run.terminate() == 0, run.log()[-3000:]
    finally:
        run.stop_quietly()
    assert len(out) == N
    totals: dict[str, int] = {}
    want: dict[int, int] = {}
    for key, order in orders:
        totals[key] = totals.get(key, 0) + order["amount"]
        want[order["id"]] = totals[key]
    got = {json.loads(r.value)["id"]: json.loads(r.value)["total"] for r in out}
    assert got == want  # every input once, with its exact running total
    log = run.log()
    assert "transactional producer ready" in log and "eokafka.worker" in log
    assert secret not in log


def test_a_wrong_password_is_a_clear_error_naming_mechanism_and_user(
    secured: BrokerInfo, tmp_path: Path
) -> None:
    planted = "Wr0ng-planted-password"
    config = {**secured.client_config, "sasl.password": planted}
    names = app_topics(secured.bootstrap, "secbad", 1)
    run = worker(
        "tests.apps.eos_copy:app", secured.bootstrap, tmp_path, "bad", names.env, _flags(config)
    )
    run.start()
    try:
        code = run.wait(120)  # bounded: librdkafka alone would retry the login for ever
    finally:
        run.stop_quietly()
    log = run.log()
    assert code == 1, log[-3000:]
    assert "refused the SASL login of user 'eokafka' with mechanism SCRAM-SHA-512" in log
    assert "Traceback" not in log
    assert planted not in log


def test_describe_redacts_the_secrets_of_a_secured_app(secured: BrokerInfo) -> None:
    planted = secured.client_config["sasl.password"]
    env = {**os.environ, "TEST_SECRET": planted, "EOKAFKA_CONFIG": f"sasl.password={planted}"}
    for fmt in ("text", "mermaid", "dot"):
        proc = subprocess.run(
            [sys.executable, "-m", "eokafka", "describe", "tests.apps.describe_apps:secured",
             "--format", fmt],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert planted not in proc.stdout + proc.stderr
        if fmt == "text":
            assert "'sasl.password': '[redacted]'" in proc.stdout


def test_an_error_quoting_the_password_is_printed_without_it(
    secured: BrokerInfo, tmp_path: Path
) -> None:
    """A processor fails with the password in its message, in two worker processes."""
    config = dict(secured.client_config)
    secret = config["sasl.password"]
    names = app_topics(secured.bootstrap, "leak", 2, create_output=False)
    produce_records(secured.bootstrap, names.src, [(b"k", b"v")] * 4)
    # Only --config gives the workers the password: they get it in the pickled settings.
    env = {**names.env, "TEST_SECRET": secret, "TEST_SECRET_IN_APP": "0"}
    run = worker(
        "tests.apps.leaky:app", secured.bootstrap, tmp_path, "leak", env,
        ["--processes", "2", "--instance-id", "leak", *_flags(config)],
    )  # fmt: skip
    run.start()
    try:
        code = run.wait(180)
    finally:
        run.stop_quietly()
    log = run.log()
    assert code == 1, log[-3000:]
    assert "bad record; we were using [redacted]" in log
    assert secret not in log
