"""In-memory stand-ins for confluent-kafka's Consumer, Producer and AdminClient.

They answer the calls the worker, its transactions and its store restores make, the way
librdkafka answers them where the worker depends on it: messages are real
``confluent_kafka.Message`` objects, errors are ``KafkaException(KafkaError)`` with the
fatal / abortable flags (``errors.py``), ``position()`` is invalid after an assign or a seek
until a record is consumed, and a partition EOF moves the position over trailing transaction
markers. One module per client: ``consumer.py``, ``producer.py``, ``admin.py``.
"""

from eokafka.testing.admin import MemoryAdmin
from eokafka.testing.consumer import MemoryConsumer, no_leave
from eokafka.testing.producer import MemoryProducer

__all__ = ["MemoryAdmin", "MemoryConsumer", "MemoryProducer", "no_leave"]
