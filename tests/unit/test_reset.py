"""The reset's options: targets, durations, date-times, and which topics it deletes."""

from __future__ import annotations

import pytest

from eokafka.config import Settings
from eokafka.reset import (
    ResetError,
    Target,
    choose_target,
    internal_topics,
    parse_datetime,
    parse_duration,
)
from tests.apps.describe_apps import words


@pytest.mark.parametrize(
    "text, seconds",
    [("PT1H", 3600), ("PT15M", 900), ("P1DT12H", 129_600), ("PT0.5S", 0.5), ("90", 90),
     ("P2D", 172_800), ("pt1h30m", 5400)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1h", "PT", "P", "-5", "PT1X", ""])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ResetError, match="--by-duration"):
        parse_duration(text)


def test_datetimes_without_a_zone_are_utc() -> None:
    assert parse_datetime("1970-01-01T00:00:01Z") == 1000
    assert parse_datetime("1970-01-01T00:00:01") == 1000
    assert parse_datetime("1970-01-01T01:00:01+01:00") == 1000
    with pytest.raises(ResetError, match="--to-datetime"):
        parse_datetime("yesterday")


def test_one_target_at_a_time() -> None:
    assert choose_target(False, None, None) == Target("earliest")
    assert choose_target(True, None, None) == Target("latest")
    assert choose_target(False, None, "PT1M", now_ms=100_000) == Target("timestamp", 40_000)
    with pytest.raises(ResetError, match="--to-latest, --by-duration"):
        choose_target(True, None, "PT1M")


def test_the_internal_topics_of_an_app() -> None:
    assert internal_topics(words.topology, Settings("words")) == [
        ("words-per-min-changelog", "changelog"),
        ("words-per-min-stream-time-changelog", "changelog"),
        ("words-word-counts-changelog", "changelog"),
        ("words-by-word-repartition", "repartition"),
        ("words-source-offsets", "source offsets"),
        ("words-dlq", "dead-letter"),
    ]
