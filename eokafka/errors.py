"""Exceptions users see; each names the setting, topic, partition or offset at fault."""

from __future__ import annotations

from eokafka.tracebacks import user_traceback


class EokafkaError(Exception):
    """Base class of eokafka's own errors."""


class ConfigError(EokafkaError):
    """A setting is missing, malformed or inconsistent with another one."""


class TopologyError(EokafkaError):
    """The topology is declared wrongly (e.g. a processor without a source topic)."""


class MissingTopicError(EokafkaError):
    """A topic the app needs does not exist and the app was not told to create it."""


class PoisonRecordError(EokafkaError):
    """A record could not be deserialized or its processor raised, under the `fail` policy.

    The message ends with the traceback of the user's code, when the error came from there.
    """

    def __init__(self, topic: str, partition: int, offset: int, stage: str, cause: BaseException):
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.stage = stage
        self.cause = cause
        trace = user_traceback(cause)
        super().__init__(
            f"poison record at {topic}[{partition}]@{offset} ({stage}): "
            f"{type(cause).__name__}: {cause}" + (f"\n{trace}" if trace else "")
        )


class SourceRecordError(EokafkaError):
    """A source record could not be read or sent, under the `fail` policy; names its origin."""

    def __init__(self, origin: object, stage: str, cause: BaseException):
        self.origin = origin
        self.stage = stage
        self.cause = cause
        super().__init__(
            f"poison source record at {origin} ({stage}): {type(cause).__name__}: {cause}"
        )


class FencedError(EokafkaError):
    """Another worker with the same instance id took over; this one must stop, not fight back."""


class OutputRefusedError(EokafkaError):
    """An output the producer or the broker is certain to refuse; its input goes to the policy."""


class StalledError(EokafkaError):
    """Transactions keep aborting on one record and no policy can move past it."""


class BrokerUnreachableError(EokafkaError):
    """No broker of ``bootstrap_servers`` answered within the start-up bound."""
