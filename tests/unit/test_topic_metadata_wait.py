"""A topic that never shows in metadata ends the wait by time, not by a count of requests."""

from __future__ import annotations

import time

import pytest

from eokafka.errors import MissingTopicError
from eokafka.runtime import topics


class _SlowlyCreatedTopics(topics.TopicGuard):
    """Metadata shows the topic only after a delay, as on a busy broker."""

    def __init__(self, shows_after: float) -> None:
        self._shows_at = time.monotonic() + shows_after
        self.requests = 0

    def partitions(self, topic: str) -> int | None:
        self.requests += 1
        return 3 if time.monotonic() >= self._shows_at else None


def test_a_slow_broker_is_waited_for_past_a_hundred_requests() -> None:
    view = _SlowlyCreatedTopics(shows_after=1.5)
    assert view._await_metadata("t") == 3


def test_a_topic_that_never_shows_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topics, "_TIMEOUT", 0.3)
    with pytest.raises(MissingTopicError, match="'t'.*within"):
        _SlowlyCreatedTopics(shows_after=60)._await_metadata("t")
