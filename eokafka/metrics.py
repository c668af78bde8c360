"""Prometheus metrics of one worker process and the /metrics server.

Counters move when a transaction commits, from a per-transaction tally: an aborted and
replayed record is counted once, so the counters agree with the committed output.
Latencies are observed once per consumed batch to keep the per-record path free of locks.

A worker that serves no metrics (no metrics port, no query server) has nothing that could
read them: it builds its WorkerMetrics with ``served=False``, which drops every update and
never imports prometheus_client (whose exposition imports http.server, urllib.request and
wsgiref: about 60 ms of CPU on every start of a worker).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eokafka.errors import ConfigError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import InfoMetricFamily

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_PER_RECORD_BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1, 1)
_E2E_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


@dataclass
class TxnTally:
    """What the open transaction did; published only if it commits."""

    consumed: Counter[str] = field(default_factory=Counter)
    produced: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)  # by reason, see ctx.drop
    late: Counter[tuple[str, str]] = field(default_factory=Counter)  # (store, action)

    def clear(self) -> None:
        self.consumed.clear()
        self.produced.clear()
        self.skipped.clear()
        self.dead_lettered.clear()
        self.dropped.clear()
        self.late.clear()


class _Identity:
    """``eokafka_worker_info``: the worker's application id, instance id and version.

    The version is looked up at the first scrape: importlib.metadata scans every folder on
    sys.path for it, which costs a worker's start-up more CPU than most of its imports."""

    def __init__(self, application_id: str, instance_id: str, version: Callable[[], str]) -> None:
        self.labels = {"application_id": application_id, "instance_id": instance_id}
        self.version = version

    def describe(self) -> Iterator[InfoMetricFamily]:
        from prometheus_client.core import InfoMetricFamily

        yield InfoMetricFamily("eokafka_worker", "Worker identity")

    def collect(self) -> Iterator[InfoMetricFamily]:
        from prometheus_client.core import InfoMetricFamily

        if "version" not in self.labels:
            self.labels["version"] = self.version()
        yield InfoMetricFamily("eokafka_worker", "Worker identity", value=self.labels)


class _Unread:
    """An instrument of metrics nobody reads: takes every update and keeps none."""

    def labels(self, *_labels: str) -> _Unread:
        return self

    def inc(self, _amount: float = 1) -> None:
        pass

    def set(self, _value: float) -> None:
        pass

    def observe(self, _value: float) -> None:
        pass

    def remove(self, *_labels: str) -> None:
        pass


_UNREAD = _Unread()


def _unread(*_args: object, **_kwargs: object) -> _Unread:
    return _UNREAD


class WorkerMetrics:
    """One registry per worker, so several workers in one process never collide."""

    registry: CollectorRegistry  # absent when not served

    def __init__(
        self,
        application_id: str,
        instance_id: str,
        version: str | Callable[[], str],
        served: bool = True,
    ) -> None:
        """``version``: the package's, or how to look it up when first scraped; ``served``:
        False when nothing in this process can read the metrics (updates are dropped)."""
        self.served = served
        if served:
            from prometheus_client import CollectorRegistry, Gauge, Histogram
            from prometheus_client import Counter as PCounter

            self.registry = CollectorRegistry(auto_describe=True)
            r: CollectorRegistry | None = self.registry
        else:
            PCounter = Gauge = Histogram = _unread  # type: ignore[assignment]  # noqa: N806
            r = None
        self.consumed = PCounter(
            "eokafka_records_consumed", "Input records committed", ["topic"], registry=r
        )
        self.produced = PCounter(
            "eokafka_records_produced", "Output records committed", ["topic"], registry=r
        )
        self.skipped = PCounter(
            "eokafka_records_skipped", "Poison records skipped (on_error=skip)", ["topic"],
            registry=r,
        )
        self.dead_lettered = PCounter(
            "eokafka_records_dead_lettered", "Poison records sent to the dead-letter topic",
            ["topic"], registry=r,
        )
        self.dropped = PCounter(
            "eokafka_records_dropped",
            "Records a topology dropped on purpose (e.g. a None key before an aggregation)",
            ["reason"],
            registry=r,
        )
        self.late = PCounter(
            "eokafka_late_records",
            "Records that came after their window closed, by window store and action "
            "(dropped, dead-lettered)",
            ["store", "action"],
            registry=r,
        )
        self.commits = PCounter(
            "eokafka_transactions_committed", "Transactions committed", registry=r
        )
        self.aborts = PCounter(
            "eokafka_transactions_aborted", "Transactions aborted", ["reason"], registry=r
        )
        self.aborts_without_progress = PCounter(
            "eokafka_aborts_without_progress",
            "Aborted transactions since the last commit that moved an offset forward "
            "(deliberate aborts that set a poison record aside are not counted)",
            registry=r,
        )
        self.abort_streak = Gauge(
            "eokafka_abort_streak",
            "Consecutive aborts without committed progress, now; 0 after a commit that moved on",
            registry=r,
        )
        self.producer_resets = PCounter(
            "eokafka_producer_resets",
            "Transactional producers re-created, by cause (unknown-outcome, indefinite-error, "
            "fenced, fatal, abort-failed)",
            ["cause"],
            registry=r,
        )
        self.rebalances = PCounter(
            "eokafka_rebalances", "Rebalance events", ["event"], registry=r
        )
        self.commit_latency = Histogram(
            "eokafka_commit_latency_seconds", "send_offsets_to_transaction + commit_transaction",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.processing_latency = Histogram(
            "eokafka_processing_latency_seconds",
            "Mean processing time per record, observed once per consumed batch",
            buckets=_PER_RECORD_BUCKETS, registry=r,
        )
        self.e2e_latency = Histogram(
            "eokafka_end_to_end_latency_seconds",
            "Now minus record timestamp at processing, for the first record of each batch",
            buckets=_E2E_BUCKETS, registry=r,
        )
        self.lag = Gauge(
            "eokafka_consumer_lag", "Records behind the last stable offset, per partition",
            ["topic", "partition"], registry=r,
        )
        store = ["store", "partition"]
        self.restored = PCounter(
            "eokafka_records_restored", "Changelog records restored", store, registry=r
        )
        self.restore_remaining = Gauge(
            "eokafka_restore_remaining_records", "Changelog records left to restore", store,
            registry=r,
        )
        self.restore_duration = Gauge(
            "eokafka_restore_duration_seconds", "Duration of the last restore", store, registry=r
        )
        self.store_keys = Gauge(
            "eokafka_store_keys",
            "Keys in a store (refreshed at most every 5 s, at a commit)",
            store,
            registry=r,
        )
        self.standby_lag = Gauge(
            "eokafka_standby_lag",
            "Changelog records a standby replica is behind (high watermark minus its position)",
            store,
            registry=r,
        )
        self.global_records = PCounter(
            "eokafka_global_table_records",
            "Records of a global table's topic applied to this worker's copy",
            ["table"],
            registry=r,
        )
        self.global_keys = Gauge(
            "eokafka_global_table_keys", "Keys in this worker's copy of a global table", ["table"],
            registry=r,
        )
        if r is not None:
            lookup = (lambda: version) if isinstance(version, str) else version
            r.register(_Identity(application_id, instance_id, lookup))

    def publish(self, tally: TxnTally) -> None:
        """Fold a committed transaction's tally into the counters."""
        for counter, counts in (
            (self.consumed, tally.consumed),
            (self.produced, tally.produced),
            (self.skipped, tally.skipped),
            (self.dead_lettered, tally.dead_lettered),
            (self.dropped, tally.dropped),
        ):
            for topic, n in counts.items():
                counter.labels(topic).inc(n)
        for (store, action), n in tally.late.items():
            self.late.labels(store, action).inc(n)
        self.commits.inc()

    def forget_partitions(self, partitions: list[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            try:
                self.lag.remove(topic, str(partition))
            except KeyError:
                pass

    def serve(self, port: int, host: str) -> None:
        if not self.served:
            raise RuntimeError("metrics built with served=False cannot be served")
        from prometheus_client import start_http_server

        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"metrics_port {port} on {host}: {exc.strerror}") from exc
