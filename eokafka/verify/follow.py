"""``eokafka verify --follow``: keep checking a running sync, with Prometheus metrics.

Every interval the check runs again (both sides read whole, below the sink's committed
offsets, so a record deleted at the destination shows in the next check), its figures go
to the metrics served on ``--metrics-port``, and a summary line is printed. A difference
that lasts ``--fail-after`` checks in a row ends the run with exit code 1; the alert rules
in ``deploy/verify-alerts.yml`` do the same for Prometheus.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, start_http_server

from eokafka.errors import ConfigError
from eokafka.verify import CheckOptions, Report, check

KINDS = ("missing", "duplicated", "differing", "extra", "source_repeated", "unkeyed")


@dataclass(frozen=True)
class FollowOptions:
    interval: float = 10.0
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    fail_after: int = 0  # checks in a row with a difference before exiting 1; 0: never
    as_json: bool = False


class SyncMetrics:
    """The monitor's metrics, in a registry of their own."""

    def __init__(self, opts: CheckOptions) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.checks = Counter("eokafka_verify_checks", "Checks completed", registry=r)
        self.errors = Counter("eokafka_verify_check_errors",
                              "Checks that could not run (broker, database, folder)", registry=r)
        self.checked = Gauge("eokafka_verify_records_checked",
                             "Source records with an id below the line, in the last check",
                             registry=r)
        self.differences = Gauge("eokafka_verify_differences",
                                 "Records found wrong by the last check, by kind", ["kind"],
                                 registry=r)
        self.ok = Gauge("eokafka_verify_ok", "1 if the last check found no difference",
                        registry=r)
        self.failing = Gauge("eokafka_verify_failing_checks",
                             "Checks in a row that found a difference", registry=r)
        self.offset = Gauge("eokafka_verify_checked_offset",
                            "The line: the source offset checked up to (exclusive)",
                            ["partition"], registry=r)
        self.lag = Gauge("eokafka_verify_lag_records",
                         "Source records after the line (not expected at the destination yet)",
                         ["partition"], registry=r)
        self.open = Gauge("eokafka_verify_open_transactions",
                          "Partitions with a transaction still open after --open-wait",
                          registry=r)
        self.last = Gauge("eokafka_verify_last_check_timestamp_seconds",
                          "When the last check ended", registry=r)
        self.duration = Gauge("eokafka_verify_check_duration_seconds",
                              "How long the last check took", registry=r)
        Info("eokafka_verify", "What is checked", registry=r).info(
            {"source": opts.source, "destination": opts.destination, "group": opts.group or ""}
        )

    def serve(self, port: int, host: str) -> None:
        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"--metrics-port {port} on {host}: {exc.strerror}") from exc

    def publish(self, report: Report, failing: int, took: float) -> None:
        counts = _counts(report)
        for kind in KINDS:
            self.differences.labels(kind).set(counts[kind])
        self.checked.set(report.source_count)
        self.ok.set(1 if report.ok else 0)
        self.failing.set(failing)
        for c in report.checked_up_to:
            self.offset.labels(str(c["partition"])).set(c["offset"])
            self.lag.labels(str(c["partition"])).set(max(0, c["end"] - c["offset"]))
        self.open.set(len(report.open_transactions))
        self.duration.set(took)
        self.last.set(time.time())
        self.checks.inc()


def _counts(report: Report) -> dict[str, int]:
    return {
        "missing": report.missing_count,
        "duplicated": report.duplicated_count,
        "differing": report.differing_count,
        "extra": report.extra_count,
        "source_repeated": report.source_duplicated_count,
        "unkeyed": report.unreadable_count,
    }


def line_of(report: Report, failing: int) -> str:
    """One check in one line."""
    counts = ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in _counts(report).items())
    up_to = " ".join(f"[{c['partition']}]{c['offset']}" for c in report.checked_up_to)
    verdict = "OK" if report.ok else f"DIFFERENCES FOUND ({failing} checks in a row)"
    hanging = f", {len(report.open_transactions)} open transactions" \
        if report.open_transactions else ""
    return (
        f"{time.strftime('%Y-%m-%dT%H:%M:%S')} checked {report.source_count} records below "
        f"{up_to or 'the end'} (lag {report.lag}): {counts}{hanging}: {verdict}"
    )


def follow(
    check_opts: CheckOptions,
    opts: FollowOptions,
    echo: Callable[[str], None],
    stop: threading.Event | None = None,
) -> int:
    """Check every ``opts.interval`` seconds until stopped (SIGTERM, SIGINT or ``stop``).

    Returns 1 when a difference lasted ``opts.fail_after`` checks, else 0 once stopped.
    """
    if check_opts.group is None:
        raise ConfigError("--follow needs the sink's group (--group or --app): it checks "
                          "below the offsets the sink committed")
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    metrics = SyncMetrics(check_opts)
    if opts.metrics_port is not None:
        metrics.serve(opts.metrics_port, opts.metrics_host)
    failing = 0
    checked = False
    while not stop.is_set():
        started = time.monotonic()
        try:
            report = check(check_opts).report
        except Exception as exc:  # a monitor outlives a broker or database that is away
            if isinstance(exc, ConfigError) and not checked:
                raise  # a wrong topic, table or folder: no point in trying again
            metrics.errors.inc()
            echo(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} check failed: "
                 f"{type(exc).__name__}: {exc}")
        else:
            checked = True
            failing = 0 if report.ok else failing + 1
            metrics.publish(report, failing, time.monotonic() - started)
            echo(json.dumps({"failing_checks": failing, **report.as_dict()})
                 if opts.as_json else line_of(report, failing))
            if opts.fail_after and failing >= opts.fail_after:
                echo(f"a difference lasted {failing} checks in a row: giving up")
                return 1
        stop.wait(max(0.0, opts.interval - (time.monotonic() - started)))
    return 0
