"""Metrics, --processes, and topics the app needs but that are missing."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import requests
from confluent_kafka import KafkaException
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import app_topics, wait_for, worker
from tests.kafka_helpers import produce_records, read_committed, topic_partitions, unique_name

pytestmark = pytest.mark.integration
TARGET = "tests.apps.eos_copy:app"


def _free_port(count: int = 1) -> int:
    """A port P such that P .. P+count-1 are all free (worker i serves on P+i)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            for i in range(1, count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + i))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no {count} consecutive free ports")


def _samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _inputs(n: int, poison: set[int]) -> list[tuple[bytes, bytes]]:
    return [
        (str(i).encode(), json.dumps({"id": i, "poison": i in poison}).encode()) for i in range(n)
    ]


def test_metrics_agree_with_the_records_processed(kafka_bootstrap: str, tmp_path: Path) -> None:
    names = app_topics(kafka_bootstrap, "m", 2)
    app_id, src, out, env = names.app_id, names.src, names.out, names.env
    total, poison = 3_000, {10, 2_000}
    produce_records(kafka_bootstrap, src, _inputs(total, poison))
    port = _free_port()
    extra = ["--metrics-port", str(port), "--on-error", "dead-letter"]
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, extra).start()
    try:
        good = total - len(poison)
        read_committed(kafka_bootstrap, out, expected_count=2 * good, timeout=120)
        consumed = ("eokafka_records_consumed_total", (("topic", src),))

        def counted() -> bool:
            try:
                return _samples(port).get(consumed) == total
            except requests.ConnectionError:
                return False

        wait_for(counted, 30, "eokafka_records_consumed_total to reach the input count")
        m = _samples(port)
        assert m[("eokafka_records_produced_total", (("topic", out),))] == 2 * good
        assert m[("eokafka_records_dead_lettered_total", (("topic", src),))] == len(poison)
        commits = m[("eokafka_transactions_committed_total", ())]
        assert commits >= 1
        assert m[("eokafka_commit_latency_seconds_count", ())] == commits
        assert m[("eokafka_processing_latency_seconds_count", ())] >= 1
        assert m[("eokafka_end_to_end_latency_seconds_count", ())] >= 1
        assert m[("eokafka_rebalances_total", (("event", "assign"),))] >= 1
        lag = {k[1]: v for k, v in m.items() if k[0] == "eokafka_consumer_lag"}
        assert set(lag) == {(("partition", str(p)), ("topic", src)) for p in (0, 1)}
        assert all(v == 0 for v in lag.values())
        info = next(k for k in m if k[0] == "eokafka_worker_info")
        assert ("application_id", app_id) in info[1]
        assert w.terminate() == 0
    finally:
        w.stop_quietly()


def test_processes_flag_runs_n_workers_that_share_the_work(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = app_topics(kafka_bootstrap, "p", 4)
    src, out, env = names.src, names.out, names.env
    total = 10_000
    port = _free_port(2)
    extra = ["--processes", "2", "--metrics-port", str(port)]
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, extra).start()

    def both_assigned() -> bool:
        last: dict[str, str] = {}
        for line in w.log().splitlines():
            for name in ("worker-0", "worker-1"):
                if f" {name}[" in line and "eokafka.worker: assigned" in line:
                    last[name] = line
        return len(last) == 2 and all(src in line for line in last.values())

    try:
        wait_for(both_assigned, 60, "both worker processes to own partitions")
        produce_records(kafka_bootstrap, src, _inputs(total, set()))
        records = read_committed(kafka_bootstrap, out, expected_count=2 * total, timeout=120)
        pairs = sorted((json.loads(r.value)["id"], json.loads(r.value)["copy"]) for r in records)
        assert pairs == [(i, c) for i in range(total) for c in (0, 1)]

        def per_worker() -> list[float]:
            key = ("eokafka_records_consumed_total", (("topic", src),))
            return [_samples(p).get(key, 0.0) for p in (port, port + 1)]

        wait_for(lambda: sum(per_worker()) == total, 30, "both workers' counters")
        assert all(n > 0 for n in per_worker()), "one of the two workers did nothing"
        ids = {
            dict(k[1])["instance_id"]
            for p in (port, port + 1)
            for k in _samples(p)
            if k[0] == "eokafka_worker_info"
        }
        assert len(ids) == 2
        assert w.terminate() == 0
    finally:
        w.stop_quietly()


def test_missing_output_topic_is_a_clear_error_unless_told_to_create(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = app_topics(kafka_bootstrap, "t", 1, create_output=False)
    src, out, env = names.src, names.out, names.env
    produce_records(kafka_bootstrap, src, _inputs(10, set()))
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env).start()
    try:
        assert w.wait(60) == 1
        assert f"output topic '{out}' does not exist" in w.log()
        assert "--create-topics" in w.log()
        w.args.append("--create-topics")
        w.start()

        def created() -> bool:
            try:
                return len(topic_partitions(kafka_bootstrap, out, timeout=5)) > 0
            except KafkaException:
                return False

        wait_for(created, 60, f"the worker to create {out}")
        records = read_committed(kafka_bootstrap, out, expected_count=20, timeout=60)
        assert len(records) == 20
        assert w.terminate() == 0
    finally:
        w.stop_quietly()


def test_missing_input_topic_is_a_clear_error(kafka_bootstrap: str, tmp_path: Path) -> None:
    src = unique_name("nothing-here")
    env = {"TEST_APP_ID": unique_name("t"), "TEST_INPUT": src, "TEST_OUTPUT": "unused"}
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env).start()
    try:
        assert w.wait(60) == 1
        assert f"input topic '{src}' does not exist" in w.log()
    finally:
        w.stop_quietly()
