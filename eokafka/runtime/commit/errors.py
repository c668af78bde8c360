"""How the commit tells its outcome, and how librdkafka's transactional errors are classed.

Two exceptions cross the commit's seams: :class:`TransactionAborted` (the open transaction is
gone already: aborted, or dropped with its producer) and :class:`RecordFailed` (a record's
work can't be undone inside the open transaction: abort it, then replay). Everything that
produces or prepares raises one of them; only the transaction owner acts on them.
"""

from __future__ import annotations

from typing import Final

from confluent_kafka import KafkaError


class TransactionAborted(Exception):
    """The open transaction is gone (aborted, or dropped with its producer): participants
    rewind, or re-sync from the broker when the producer was re-created."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RecordFailed(Exception):
    """The open transaction must go (then replay): a record can't be undone inside it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def codes(*names: str) -> frozenset[int]:
    """librdkafka error codes by name, skipping those this librdkafka does not have."""
    return frozenset(c for n in names if (c := getattr(KafkaError, n, None)) is not None)


FENCED_CODES: Final = codes("_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH",
                            "FENCED_INSTANCE_ID")  # fmt: skip
# Errors after which a request may still reach the broker later: a client-side timeout, a
# broken connection, a broker-side request timeout. The call's outcome is unknown.
INDEFINITE_CODES: Final = codes("_TIMED_OUT", "_TIMED_OUT_QUEUE", "_TRANSPORT", "_MSG_TIMED_OUT",
                                "_ALL_BROKERS_DOWN", "REQUEST_TIMED_OUT",
                                "NETWORK_EXCEPTION")  # fmt: skip
_MUST_ABORT_CODES: Final = codes("_FATAL", "_FENCED", "_STATE")


def is_fenced(err: KafkaError) -> bool:
    return err.code() in FENCED_CODES and (err.fatal() or not err.txn_requires_abort())


def is_indefinite(err: KafkaError) -> bool:
    """Whether the request behind ``err`` may have taken effect, or may still do so later."""
    return err.code() in INDEFINITE_CODES


def must_abort(err: KafkaError) -> bool:
    """Whether an error from produce() says the transaction must go, not that the record is
    at fault: a producer in a fatal state refuses every record with _FATAL (without the fatal
    flag), and after a refused delivery every later produce() fails with _STATE."""
    if err.txn_requires_abort() or err.fatal() or err.retriable():
        return True
    return err.code() in _MUST_ABORT_CODES
