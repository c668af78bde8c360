"""``eokafka run`` as a new user meets it: topics it creates, and errors in the app's code.

Real bounded runs (``--until-end``) of tests/apps/cli_apps.py: two co-partitioned inputs
feeding one store, a declared output, and a processor that raises on ``{"boom": true}``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.apps import cli_apps
from tests.integration.cli import app_env, eokafka
from tests.kafka_helpers import (
    create_topic,
    produce_records,
    read_committed,
    topic_partitions,
)

APP = "tests.apps.cli_apps:app"
RAISE_LINE = cli_apps.check.__code__.co_firstlineno + 2  # the raise in check()
APP_FILE = str(Path(cli_apps.__file__).resolve())


def _run(bootstrap: str, env: dict[str, str], tmp: Path, *extra: str) -> tuple[int, str, str]:
    done = eokafka(
        "run", APP, "--until-end", "--state-dir", str(tmp / "state"), *extra,
        bootstrap=bootstrap, env=env,
    )  # fmt: skip
    return done.code, done.out, done.err


def test_create_topics_with_a_stated_count_logs_what_it_created(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = app_env("cli-create")
    code, out, err = _run(kafka_bootstrap, env, tmp_path, "--create-topics", "--partitions", "3")
    assert code == 0, err[-3000:]
    assert "bounded run finished (end): 0 records in, 0 out" in out
    for var, role in (("TEST_INPUT", "input"), ("TEST_INPUT2", "input"), ("TEST_OUTPUT", "output")):
        assert topic_partitions(kafka_bootstrap, env[var]) == [0, 1, 2]
        assert f"created {role} topic {env[var]} with 3 partition(s) (--partitions)" in err, err
    changelog = f"{env['TEST_APP_ID']}-counts-changelog"
    assert topic_partitions(kafka_bootstrap, changelog) == [0, 1, 2]


def test_create_topics_without_a_count_follows_the_co_partitioned_input(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = app_env("cli-follow")
    create_topic(kafka_bootstrap, env["TEST_INPUT"], 2)
    code, _, err = _run(kafka_bootstrap, env, tmp_path, "--create-topics")
    assert code == 0, err[-3000:]
    assert topic_partitions(kafka_bootstrap, env["TEST_INPUT2"]) == [0, 1]
    assert (
        f"created input topic {env['TEST_INPUT2']} with 2 partition(s) (like "
        f"{env['TEST_INPUT']}, with which it shares a store)"
    ) in err, err


def _feed(bootstrap: str, env: dict[str, str], boom: int) -> None:
    for var in ("TEST_INPUT", "TEST_INPUT2"):
        create_topic(bootstrap, env[var], 1)
    create_topic(bootstrap, env["TEST_OUTPUT"], 1)
    records = [(b"k", json.dumps({"id": i, "boom": i == boom}).encode()) for i in range(4)]
    produce_records(bootstrap, env["TEST_INPUT"], records)


def test_a_processor_exception_is_logged_with_the_apps_traceback_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = app_env("cli-skip")
    _feed(kafka_bootstrap, env, boom=2)
    code, _, err = _run(kafka_bootstrap, env, tmp_path, "--on-error", "skip")
    assert code == 0, err[-3000:]
    where = f"{env['TEST_INPUT']}[0]@2"
    assert err.count(f"skipped poison record {where} (count, process): ValueError: boom in "
                     "record 2\nTraceback (most recent call last):") == 1, err  # fmt: skip
    trace = err.split("Traceback (most recent call last):", 1)[1]
    frames = re.findall(r'^  File "([^"]+)", line (\d+), in (\w+)', trace, re.MULTILINE)
    frames = frames[: next(i for i, f in enumerate(frames) if f[2] == "check") + 1]
    assert frames[0][0].endswith("eokafka/runtime/tasks/process.py")  # the one frame that called it
    assert [f[2] for f in frames[1:]] == ["count", "check"]
    assert frames[-1][:2] == (APP_FILE, str(RAISE_LINE))
    assert err.count("Traceback (most recent call last)") == 1  # once, though replayed
    ids = [json.loads(r.value)["id"] for r in read_committed(kafka_bootstrap, env["TEST_OUTPUT"])]
    assert ids == [0, 1, 3]


def test_under_fail_the_error_ends_with_the_traceback(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = app_env("cli-fail")
    _feed(kafka_bootstrap, env, boom=0)
    code, _, err = _run(kafka_bootstrap, env, tmp_path)
    assert code == 1, err[-3000:]
    message = err[err.index("error: poison record at") :]
    assert message.startswith(
        f"error: poison record at {env['TEST_INPUT']}[0]@0 (process): ValueError: boom in "
        "record 0\nTraceback (most recent call last):\n"
    ), message
    assert f'  File "{APP_FILE}", line {RAISE_LINE}, in check' in message
    assert message.rstrip().endswith("ValueError: boom in record 0")
