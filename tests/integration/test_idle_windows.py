"""Windows that close without new data on a real broker: a windowed count opted in with
``close_on_idle_ms`` emits every window once its partitions go idle, exactly once through
SIGKILLs of its worker; the same count without the option, run beside it on the same input,
emits only the windows its data closed. Workers are real ``eokafka run`` processes
(tests/apps/idle_window_app.py); the reference is tests/windows_reference.py."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.apps.idle_window_app import GRACE_MS, SIZE_MS
from tests.integration.harness import app_topics, wait_for, worker
from tests.integration.test_dsl import _table_loaded
from tests.integration.test_timers import _written
from tests.integration.test_windows import _diff, _once, _produce, _windowed
from tests.kafka_helpers import create_topic, read_committed, unique_name
from tests.windows_reference import Spec, expected, shuffled_input

pytestmark = pytest.mark.integration
TARGET = "tests.apps.idle_window_app:app"


def test_idle_partitions_close_their_windows_only_when_opted_in(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    data = shuffled_input(rng, 2, 300, 6, step=20, disorder=300, late_every=23, late_by=6_000)
    want = expected(Spec("tumbling", size=SIZE_MS, grace=GRACE_MS), data, "count")
    assert want.open and want.final and want.late
    idle = app_topics(kafka_bootstrap, "idle-win", 2)
    plain_app, plain_out = unique_name("idle-win-plain"), unique_name("idle-win-plain-out")
    create_topic(kafka_bootstrap, plain_out, 2)
    plain_env = {**idle.env, "TEST_APP_ID": plain_app, "TEST_OUTPUT": plain_out}
    opted = worker(TARGET, kafka_bootstrap, tmp_path, "idle",
                   {**idle.env, "TEST_IDLE_MS": "1000"}, ["--instance-id", "w"])  # fmt: skip
    plain = worker(TARGET, kafka_bootstrap, tmp_path / "plain", "plain", plain_env,
                   ["--instance-id", "w"])  # fmt: skip
    (tmp_path / "plain").mkdir()
    everything = want.final | want.open
    try:
        opted.start()
        plain.start()
        _produce(kafka_bootstrap, idle.src, data, ts_field=False)

        def closed() -> int:
            return len({w for w, _ in _windowed(read_committed(kafka_bootstrap, idle.out))})

        # Outputs past the data's finals come from idle closes, which go on for seconds of
        # wall clock after a (re)start (GRACE_MS): SIGKILL the worker at the first of them, and
        # at the first after its restart.
        mark = len(want.final)
        for _ in range(2):
            wait_for(lambda at=mark: _written(kafka_bootstrap, idle.out) > at, 120,
                     "an idle window's close (a liveness bound)", 0.1)  # fmt: skip
            mark = _written(kafka_bootstrap, idle.out)
            opted.kill()
            opted.start()
        wait_for(lambda: closed() >= len(everything), 120, "every window (a liveness bound)", 0.3)
        wait_for(lambda: _table_loaded(kafka_bootstrap, plain_app, idle.src), 120, "the input")
        assert opted.terminate() == 0, opted.log()[-3000:]
        assert plain.terminate() == 0, plain.log()[-3000:]
    finally:
        opted.stop_quietly()
        plain.stop_quietly()
    got = _once(_windowed(read_committed(kafka_bootstrap, idle.out)))
    assert got == everything, _diff(got, everything)
    # The plain count had as long as the opted-in one to close its windows on idle: none.
    got_plain = _once(_windowed(read_committed(kafka_bootstrap, plain_out)))
    assert got_plain == want.final, _diff(got_plain, want.final)
