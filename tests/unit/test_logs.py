"""librdkafka's log lines: rate-limited per kind, retried connection failures as warnings."""

from __future__ import annotations

import logging

from eokafka.logs import RateLimit


def _record(fac: str, text: str, level: int = logging.ERROR) -> logging.LogRecord:
    """A record as confluent-kafka logs it: "%s [%s] %s" with facility, client, message."""
    return logging.LogRecord(
        "eokafka.librdkafka", level, "", 0, "%s [%s] %s", (fac, "rdkafka#consumer-1", text), None
    )


def _refused(ms: int) -> logging.LogRecord:
    return _record("FAIL", f"Connect to ipv4#127.0.0.1:9 failed (after {ms}ms in state CONNECT)")


def test_a_repeated_line_passes_once_per_interval_with_a_count() -> None:
    now = [100.0]
    limit = RateLimit(interval=10, clock=lambda: now[0])
    assert limit.filter(_refused(0))
    for n in range(20):  # the same line with other numbers in it, many times a second
        now[0] += 0.05
        assert not limit.filter(_refused(n))
    assert limit.filter(_record("FAIL", "Failed to resolve 'nosuchhost:9092'"))  # another kind
    now[0] += 10
    again = _refused(1)
    assert limit.filter(again)
    assert "(20 more like it in the last 10s)" in again.getMessage()


def test_retried_connection_failures_are_warnings() -> None:
    record = _record("FAIL", "Connect to ipv4#127.0.0.1:9 failed")
    RateLimit().filter(record)
    assert record.levelno == logging.WARNING and record.levelname == "WARNING"
    other = _record("TXNERR", "Current transaction failed")
    RateLimit().filter(other)
    assert other.levelno == logging.ERROR


def test_a_condition_librdkafka_retries_itself_is_debug() -> None:
    text = (
        "[thrd:main]: Failed to acquire transactional PID from broker TxnCoordinator/1: "
        "Broker: Coordinator load in progress: retrying"
    )
    logger = logging.getLogger("eokafka.librdkafka")
    before = logger.level
    try:
        logger.setLevel(logging.INFO)
        assert not RateLimit().filter(_record("GETPID", text, logging.WARNING))
        logger.setLevel(logging.DEBUG)
        shown = _record("GETPID", text, logging.WARNING)
        assert RateLimit().filter(shown) and shown.levelno == logging.DEBUG
    finally:
        logger.setLevel(before)
