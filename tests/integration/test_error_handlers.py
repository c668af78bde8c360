"""``on_error`` handlers with real worker processes on the real broker.

tests/apps/handler_apps.py has an app handler (skip a ValueError in processing, dead-letter
anything else with headers of its own), a stateful processor with its own handler
(dead-letter everything) and a stateless one with ``on_error="skip"``. Each input topic gets
a fault at every stage: bytes that are not JSON (deserialize), a ValueError and a KeyError
(process), an output the broker refuses after a first one (produce). The outputs are checked
against a plain computation over the inputs, the dead letters by their headers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.harness import worker
from tests.kafka_helpers import create_topic, produce_records, read_committed, unique_name

pytestmark = pytest.mark.integration
TARGET = "tests.apps.handler_apps:app"
N = 30
# offset -> the fault of that input record, per input topic (one partition: offset = id)
COPY_FAULTS = {5: "garbage", 10: "raise", 15: "missing", 20: "big"}
COUNT_FAULTS = {7: "raise", 12: "big", 18: "garbage"}
SKIP_FAULTS = {3: "raise", 6: "missing"}
KEYS = ("a", "b", "c")


def _inputs(faults: dict[int, str]) -> list[tuple[bytes, bytes]]:
    out = []
    for n in range(N):
        fault = faults.get(n)
        value = b"\xff not json" if fault == "garbage" else json.dumps({"id": n, **(
            {fault: True} if fault else {})}).encode()  # fmt: skip
        out.append((KEYS[n % 3].encode(), value))
    return out


def _env(bootstrap: str, prefix: str) -> dict[str, str]:
    env = {
        "TEST_APP_ID": unique_name(prefix),
        "TEST_INPUT": unique_name(f"{prefix}-copy"),
        "TEST_COUNTS_INPUT": unique_name(f"{prefix}-counts"),
        "TEST_SKIP_INPUT": unique_name(f"{prefix}-skip"),
        "TEST_OUTPUT": unique_name(f"{prefix}-out"),
    }
    for name in ("TEST_INPUT", "TEST_COUNTS_INPUT", "TEST_SKIP_INPUT", "TEST_OUTPUT"):
        create_topic(bootstrap, env[name], 1)
    return env


def _expected_outputs() -> list[dict]:
    """What the app must write: a plain computation over the inputs, faults left out."""
    copies = [{"id": n, "from": "copy"} for n in range(N) if n not in COPY_FAULTS]
    skips = [{"id": n, "from": "skipper"} for n in range(N) if n not in SKIP_FAULTS]
    counts, running = [], dict.fromkeys(KEYS, 0)
    for n in range(N):
        if n not in COUNT_FAULTS:
            running[KEYS[n % 3]] += 1
            counts.append({"id": n, "count": running[KEYS[n % 3]]})
    return copies + counts + skips


def _key(v: dict) -> tuple:
    return (v["id"], v.get("from", ""), v.get("count", 0))


def test_handlers_decide_per_stage_and_per_processor_stateful_and_stateless(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = _env(kafka_bootstrap, "handlers")
    produce_records(kafka_bootstrap, env["TEST_INPUT"], _inputs(COPY_FAULTS))
    produce_records(kafka_bootstrap, env["TEST_COUNTS_INPUT"], _inputs(COUNT_FAULTS))
    produce_records(kafka_bootstrap, env["TEST_SKIP_INPUT"], _inputs(SKIP_FAULTS))
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--until-end"]).start()
    try:
        assert w.wait(180) == 0, w.log()  # a bound on a hang, not a measure
    finally:
        w.stop_quietly()
    expected = _expected_outputs()
    got = [json.loads(r.value) for r in read_committed(kafka_bootstrap, env["TEST_OUTPUT"])]
    assert sorted(got, key=_key) == sorted(expected, key=_key)

    dead = read_committed(kafka_bootstrap, f"{env['TEST_APP_ID']}-dlq")
    letters = {
        (dict(r.headers)["eokafka.source.topic"].decode(),
         int(dict(r.headers)["eokafka.source.offset"])): (r, dict(r.headers))
        for r in dead
    }  # fmt: skip
    copy_in, counts_in = env["TEST_INPUT"], env["TEST_COUNTS_INPUT"]
    # The app's handler: deserialize, KeyError and the refused output dead-lettered, the
    # ValueError skipped; the counting processor's own handler: all three of its faults;
    # the skip processor: nothing.
    assert sorted(letters) == sorted(
        [(copy_in, 5), (copy_in, 15), (copy_in, 20), (counts_in, 7), (counts_in, 12),
         (counts_in, 18)]
    )  # fmt: skip
    stages = {
        (copy_in, 5): "deserialize", (copy_in, 15): "process", (copy_in, 20): "produce",
        (counts_in, 7): "process", (counts_in, 12): "produce", (counts_in, 18): "deserialize",
    }  # fmt: skip
    inputs = {copy_in: _inputs(COPY_FAULTS), counts_in: _inputs(COUNT_FAULTS)}
    for (topic, offset), (record, headers) in letters.items():
        assert headers["eokafka.error.stage"] == stages[topic, offset].encode()
        assert headers["eokafka.source.partition"] == b"0"
        assert (record.key, record.value) == inputs[topic][offset]  # the original bytes
        if topic == copy_in:
            assert headers["eokafka.processor"] == b"copy"
            assert headers["handled-by"] == b"app"
            assert headers["why"].startswith(stages[topic, offset].encode() + b":")
        else:
            assert headers["eokafka.processor"] == b"count"
            assert headers["handled-by"] == b"counts"
    assert letters[copy_in, 15][1]["why"] == b"process:KeyError"
    assert letters[counts_in, 7][1]["why"] == b"ValueError"  # not skipped: its own handler
    log = w.log()
    assert f"skipped poison record {copy_in}[0]@10 (copy, process)" in log


def test_a_handler_that_raises_stops_the_worker_naming_record_and_handler(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = _env(kafka_bootstrap, "handler-raises")
    produce_records(kafka_bootstrap, env["TEST_INPUT"], _inputs({}))
    # the handler is asked only about a record that fails: this one can't be deserialized
    produce_records(kafka_bootstrap, env["TEST_INPUT"], [(b"z", b"\xff handler_raises")])
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--until-end"]).start()
    try:
        assert w.wait(180) == 1, w.log()
    finally:
        w.stop_quietly()
    log = w.log()
    src = env["TEST_INPUT"]
    assert f"the on_error handler tests.apps.handler_apps.on_app at {src}[0]@{N}" in log
    assert "(deserialize, handling SerdeError" in log
    assert "raised RuntimeError: the handler itself broke" in log
    assert "tests/apps/handler_apps.py" in log  # the handler's own frame
    got = [json.loads(r.value)["id"] for r in read_committed(kafka_bootstrap, env["TEST_OUTPUT"])]
    assert sorted(got) == list(range(len(got)))  # records before it at most once, none after
