"""Where the runtime gets its Kafka clients and its clock.

The worker, its transactions and its store restores make every client through one of these
factories, so a bounded run can wrap the group consumer and ``eokafka.testing`` can put
in-memory clients and a virtual clock under the very same worker code.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

Config = dict[str, Any]


@dataclass(frozen=True)
class Clients:
    consumer: Callable[[Config], Any] = Consumer  # the group member that reads the inputs
    restore_consumer: Callable[[Config], Any] = Consumer  # assign-only changelog reader
    producer: Callable[[Config], Any] = Producer  # the transactional producer
    admin: Callable[[Config], Any] = AdminClient
    clock: Callable[[], float] = time.monotonic  # seconds; commit deadlines and run limits

    def replace(self, **changes: Any) -> Clients:
        return dataclasses.replace(self, **changes)


KAFKA = Clients()
