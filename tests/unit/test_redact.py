"""Secrets stay out of reprs, log lines and tracebacks."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from eokafka import redact
from eokafka.config import Settings, resolve
from eokafka.logs import setup_logging

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "key",
    [
        "sasl.password",
        "producer.sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "ssl.key.pem",
        "my.api.token",
        "cloud.credentials",
    ],
)
def test_secret_keys(key: str) -> None:
    assert redact.is_secret(key)


@pytest.mark.parametrize(
    "key", ["sasl.username", "sasl.mechanism", "ssl.ca.location", "ssl.key.location", "acks"]
)
def test_ordinary_keys(key: str) -> None:
    assert not redact.is_secret(key)


def test_settings_repr_hides_secret_values_but_keeps_them_usable() -> None:
    settings = resolve("app", {"config": {"sasl.password": "pl4nted-1", "sasl.username": "u"}})
    assert "pl4nted-1" not in repr(settings) and "pl4nted-1" not in str(settings)
    assert "'sasl.password': '[redacted]'" in repr(settings)
    assert "'sasl.username': 'u'" in repr(settings)
    assert settings.config["sasl.password"] == "pl4nted-1"  # the clients get the real value


def test_scrub_hides_remembered_values_anywhere_in_a_text() -> None:
    Settings("app", config={"consumer.ssl.keystore.password": "pl4nted-2"})
    assert redact.scrub("failed: bad password 'pl4nted-2'") == "failed: bad password '[redacted]'"


def test_an_unpickled_settings_object_remembers_its_secrets() -> None:
    """--processes N hands Settings to spawned workers by pickle."""
    data = pickle.dumps(Settings("app", config={"sasl.password": "pl4nted-3"}))
    redact._remembered.discard("pl4nted-3")
    assert pickle.loads(data).config["sasl.password"] == "pl4nted-3"
    assert "pl4nted-3" not in redact.scrub("pl4nted-3")


def test_log_lines_and_tracebacks_are_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    Settings("app", config={"sasl.password": "pl4nted-4"})
    setup_logging("test")
    log = logging.getLogger("eokafka.test")
    log.warning("connecting with %s", "pl4nted-4")
    try:
        raise RuntimeError("auth failed for pl4nted-4")
    except RuntimeError:
        log.exception("boom")
    err = capsys.readouterr().err
    assert "pl4nted-4" not in err
    assert "connecting with [redacted]" in err
    assert "RuntimeError: auth failed for [redacted]" in err


def test_the_cli_prints_a_traceback_without_the_secret() -> None:
    planted = "pl4nted-in-a-traceback"
    env = {**os.environ, "TEST_SECRET": planted, "TEST_LEAK": "import"}
    proc = subprocess.run(
        [sys.executable, "-m", "eokafka", "describe", "tests.apps.leaky:app"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "RuntimeError: could not log in as bob with password [redacted]" in proc.stderr
    assert planted not in proc.stdout + proc.stderr
