"""Test an App's topology without a broker: ``from eokafka.testing import TestDriver``.

The driver runs the worker's own code over in-memory Kafka clients; see TestDriver.
"""

from eokafka.testing.driver import TestDriver, TestRecord

__all__ = ["TestDriver", "TestRecord"]
