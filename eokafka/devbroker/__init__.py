"""Local development Kafka broker: single-node Apache Kafka in KRaft mode on a plain JVM.

Used by ``eokafka broker start|stop|status`` and by the integration-test fixture when
no Docker engine is available. See :mod:`eokafka.devbroker.broker` for the details.
"""

from eokafka.devbroker.broker import (
    BrokerInfo,
    broker_status,
    signal_broker,
    start_broker,
    stop_broker,
)
from eokafka.devbroker.errors import BrokerError
from eokafka.devbroker.home import default_home
from eokafka.devbroker.jars import kafka_version

__all__ = [
    "BrokerError",
    "BrokerInfo",
    "broker_status",
    "default_home",
    "kafka_version",
    "signal_broker",
    "start_broker",
    "stop_broker",
]
