"""eokafka: exactly-once consume-transform-produce on Kafka.

The public API is what this module exports; everything else may change.
"""

from eokafka import serdes, windows
from eokafka.app import App
from eokafka.config import Settings
from eokafka.context import ProcessorContext
from eokafka.dsl import (
    GlobalTable,
    GroupedStream,
    Stream,
    Table,
    WindowedStream,
    WindowedTable,
)
from eokafka.errors import (
    BrokerUnreachableError,
    ConfigError,
    EokafkaError,
    FencedError,
    MissingTopicError,
    OutputRefusedError,
    PoisonRecordError,
    StalledError,
    TopologyError,
)
from eokafka.on_error import DeadLetter, ErrorHandlerError
from eokafka.record import Record
from eokafka.state import StoreRecordTooLargeError
from eokafka.windows import JoinWindows, Windowed

__all__ = [
    "App",
    "BrokerUnreachableError",
    "ConfigError",
    "DeadLetter",
    "EokafkaError",
    "ErrorHandlerError",
    "FencedError",
    "GlobalTable",
    "GroupedStream",
    "JoinWindows",
    "MissingTopicError",
    "OutputRefusedError",
    "PoisonRecordError",
    "ProcessorContext",
    "Record",
    "Settings",
    "StalledError",
    "StoreRecordTooLargeError",
    "Stream",
    "Table",
    "TopologyError",
    "Windowed",
    "WindowedStream",
    "WindowedTable",
    "serdes",
    "windows",
]
