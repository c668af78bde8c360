"""Bounded runs: the record budget per worker and the summary of a run's workers together."""

from __future__ import annotations

from eokafka.runtime.bounded import Bounds, RunSummary, total


def test_max_records_is_split_evenly_over_the_workers() -> None:
    bounds = Bounds(until_end=True, max_records=10)
    assert [bounds.share(slot, 3).max_records for slot in range(3)] == [4, 3, 3]
    assert Bounds(until_end=True).share(1, 3).max_records is None


def test_the_summary_of_workers_adds_counts_and_takes_the_longest_time() -> None:
    summaries = [RunSummary(300, 600, 2.0, "end"), RunSummary(100, 200, 4.0, "end")]
    assert total(summaries) == RunSummary(400, 800, 4.0, "end")
    assert total(summaries).text() == (
        "bounded run finished (end): 400 records in, 800 out, in 4.0 s (100 records/s)"
    )
    assert total([*summaries, RunSummary(0, 0, 0.0, "interrupted")]).reason == "interrupted"
    assert total([]).reason == "interrupted"
    mixed = [RunSummary(1, 1, 1.0, "max-seconds"), RunSummary(1, 1, 1.0, "end")]
    assert total(mixed).reason == "end, max-seconds"
