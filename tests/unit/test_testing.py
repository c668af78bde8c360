"""eokafka.testing: the worker's own code over in-memory Kafka clients and a virtual clock."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import eokafka
from eokafka import serdes, windows
from eokafka.errors import PoisonRecordError, TopologyError
from eokafka.testing import TestDriver
from eokafka.windows import Windowed, WindowedSerde

S, J = serdes.String(), serdes.Json()
README = Path(__file__).resolve().parents[2] / "README.md"


def _counts(backend: Any = "memory", **settings: Any) -> eokafka.App:
    app = eokafka.App("counts", **settings)
    app.store("n", backend=backend)
    app.stream("in", key_serde=S, value_serde=J).group_by_key().count(name="n").to(
        "out", key_serde=S, value_serde=J
    )
    return app


def _pairs(driver: TestDriver, topic: str = "out", include_open: bool = False) -> list[Any]:
    records = driver.output(topic, key_serde=S, value_serde=J, include_open=include_open)
    return [(r.key, r.value) for r in records]


def test_outputs_carry_key_value_timestamp_headers_and_partition(tmp_path: Path) -> None:
    app = eokafka.App("copy")

    @app.processor("in", key_serde=S, value_serde=J)
    def copy(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        ctx.send(
            "out",
            record.key,
            {"v": record.value, "from": [record.partition, record.offset, record.timestamp]},
            value_serde=J,
            headers=[*record.headers, ("seen", b"1")],
            partition=record.partition,
        )

    with TestDriver(app, partitions=2, state_dir=str(tmp_path)) as driver:
        driver.pipe("in", "k", {"n": 1}, timestamp=1_234, headers=[("h", b"x")], partition=1)
        driver.pipe("in", "k", {"n": 2}, partition=1)  # the timestamp: the driver's clock
        [first, second] = driver.output("out", key_serde=S, value_serde=J)
    assert first.key == "k"
    assert first.value == {"v": {"n": 1}, "from": [1, 0, 1_234]}
    assert (first.timestamp, first.partition, first.offset) == (1_234, 1, 0)
    assert first.headers == [("h", b"x"), ("seen", b"1")]
    assert second.value["from"] == [1, 1, 0]
    assert second.offset == 2  # a commit marker sits between the two records


def test_an_abort_drops_the_open_transaction_and_the_replay_counts_once() -> None:
    with TestDriver(_counts(), partitions=2) as driver:
        driver.pipe("in", "a", 1)
        driver.pipe("in", "a", 1, commit=False)
        driver.pipe("in", "b", 1, commit=False)
        assert _pairs(driver) == [("a", 1)]
        assert sorted(_pairs(driver, include_open=True)) == [("a", 1), ("a", 2), ("b", 1)]
        assert driver.store("n") == {"a": 2, "b": 1}
        assert driver.store("n", committed=True) == {"a": 1}

        driver.abort()
        assert _pairs(driver, include_open=True) == [("a", 1)]
        assert driver.store("n") == {"a": 1}
        assert driver.metric("eokafka_transactions_aborted_total", reason="_OUTDATED") == 1

        driver.commit()  # the aborted records are processed again, once
        assert sorted(_pairs(driver)) == [("a", 1), ("a", 2), ("b", 1)]
        assert driver.store("n", committed=True) == {"a": 2, "b": 1}
        assert driver.metric("eokafka_records_consumed_total", topic="in") == 3


def test_the_produced_tally_counts_every_output_once_whatever_path_produced_it() -> None:
    """Single outputs are counted per run of one topic, others one by one; aborts drop both."""
    app = eokafka.App("split")

    @app.processor("in", key_serde=S, value_serde=J)
    def split(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        n = record.value
        ctx.send("even" if n % 2 == 0 else "odd", record.key, str(n))
        if n % 5 == 0:  # a second output: the general path
            ctx.send("fives", record.key, str(n))

    def produced(topic: str) -> float:
        return driver.metric("eokafka_records_produced_total", topic=topic)

    with TestDriver(app, partitions=1) as driver:
        values = [0, 2, 4, 1, 3, 6, 5, 7, 8, 10]  # runs of one topic, broken by the fives
        for n in values:
            driver.write("in", "k", n)
        driver.process()
        driver.commit()
        assert (produced("even"), produced("odd"), produced("fives")) == (6, 4, 3)
        for n in (12, 13, 15):
            driver.write("in", "k", n)
        driver.process()
        driver.abort()  # nothing of it counts; the replay counts once
        driver.commit()
        assert (produced("even"), produced("odd"), produced("fives")) == (7, 6, 4)
    assert driver.metric("eokafka_records_consumed_total", topic="in") == 13


@pytest.mark.parametrize("backend", ["memory", "sqlite", "rocksdb"])
def test_a_crash_rolls_outputs_and_state_back_to_the_last_commit(
    tmp_path: Path, backend: str
) -> None:
    driver = TestDriver(_counts(backend), partitions=3, state_dir=str(tmp_path))
    for key in ("a", "b", "a"):
        driver.pipe("in", key, 1)
    driver.pipe("in", "a", 1, commit=False)
    assert driver.store("n") == {"a": 3, "b": 1}

    driver.crash()
    assert _pairs(driver, include_open=True) == [("a", 1), ("b", 1), ("a", 2)]
    assert driver.store("n") == {"a": 2, "b": 1}  # restored: from the changelog or the files
    restored = driver.metric("eokafka_records_restored_total", store="n", partition="0")
    restored += sum(
        driver.metric("eokafka_records_restored_total", store="n", partition=str(p))
        for p in (1, 2)
    )
    assert (restored > 0) == (backend == "memory")  # persistent stores kept their commit

    driver.commit()
    assert _pairs(driver) == [("a", 1), ("b", 1), ("a", 2), ("a", 3)]
    assert driver.store("n", committed=True) == {"a": 3, "b": 1}
    driver.close()


def test_a_clean_restart_commits_first_and_keeps_everything() -> None:
    with TestDriver(_counts(), partitions=2) as driver:
        driver.pipe("in", "a", 1, commit=False)
        driver.restart()  # the revoke on the way out commits the open transaction
        assert _pairs(driver) == [("a", 1)]
        driver.pipe("in", "a", 1)
        assert _pairs(driver) == [("a", 1), ("a", 2)]
        assert driver.store("n", committed=True) == {"a": 2}
        with pytest.raises(TopologyError, match="'nowhere' does not exist"):
            driver.pipe("nowhere", "a", 1)


def test_the_commit_interval_runs_on_the_virtual_clock() -> None:
    with TestDriver(_counts(commit_interval_ms=1_000)) as driver:
        driver.pipe("in", "a", 1, commit=False)
        driver.advance_time(999)
        assert _pairs(driver) == []
        driver.advance_time(2)
        assert _pairs(driver) == [("a", 1)]
        assert driver.time_ms == 1_001


def test_commit_every_commits_without_time_passing() -> None:
    with TestDriver(_counts(commit_every=2)) as driver:
        driver.pipe("in", "a", 1, commit=False)
        assert _pairs(driver) == []
        driver.pipe("in", "a", 1, commit=False)
        assert _pairs(driver) == [("a", 1), ("a", 2)]


def test_windows_close_as_stream_time_passes() -> None:
    app = eokafka.App("win")
    app.stream("in", key_serde=S, value_serde=J).group_by_key().window(
        windows.Tumbling(100, grace_ms=10)
    ).count(name="c", emit="final").to("out", value_serde=J)
    with TestDriver(app) as driver:
        for ts in (10, 60, 105):  # 105 is within the grace of [0, 100)
            driver.pipe("in", "k", 1, timestamp=ts)
        assert driver.output("out") == []
        driver.pipe("in", "k", 1, timestamp=110)  # stream time 110 closes [0, 100)
        records = driver.output("out", key_serde=WindowedSerde(S), value_serde=J)
        assert [(r.key, r.value) for r in records] == [(Windowed("k", 0, 100), 2)]


def test_poison_records_follow_the_apps_policy() -> None:
    with TestDriver(_counts(), on_error="dead-letter") as driver:
        driver.pipe("in", "a", b"{not json", value_serde=serdes.Bytes())
        [dead] = driver.output("counts-dlq")
        assert dead.value == b"{not json"
        assert dict(dead.headers)["eokafka.error.stage"] == b"deserialize"
    with TestDriver(_counts()) as driver, pytest.raises(PoisonRecordError, match=r"in\[0\]@0"):
        driver.pipe("in", "a", b"{not json", value_serde=serdes.Bytes())


def test_the_readme_example_runs() -> None:
    section = README.read_text().split("## Testing without a broker", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the README's testing section has no python example"
    namespace: dict[str, Any] = {}
    exec(compile(code[1], "README.md", "exec"), namespace)  # noqa: S102
    tests = [fn for name, fn in namespace.items() if name.startswith("test_")]
    assert tests
    for test in tests:
        test()
