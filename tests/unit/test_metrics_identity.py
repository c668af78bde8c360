"""The worker's identity metric: its version is looked up at the first scrape, not at start."""

from __future__ import annotations

from prometheus_client import generate_latest

from eokafka.metrics import WorkerMetrics


def test_the_version_is_looked_up_once_when_first_scraped() -> None:
    lookups: list[str] = []

    def version() -> str:
        lookups.append("looked up")
        return "9.9.9"

    metrics = WorkerMetrics("app-1", "instance-1", version)
    assert lookups == []  # a worker's start pays nothing for it
    labels = 'application_id="app-1",instance_id="instance-1",version="9.9.9"'
    line = f"eokafka_worker_info{{{labels}}} 1.0"
    for _ in range(2):
        text = generate_latest(metrics.registry).decode()
        assert line in text.splitlines()
        assert "# TYPE eokafka_worker_info gauge" in text
    assert lookups == ["looked up"]


def test_a_version_given_as_text_is_shown_as_it_is() -> None:
    metrics = WorkerMetrics("app-2", "instance-2", "0")
    labels = {"application_id": "app-2", "instance_id": "instance-2", "version": "0"}
    assert metrics.registry.get_sample_value("eokafka_worker_info", labels) == 1.0
