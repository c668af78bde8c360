"""A benchmark's ratio line: the medians' ratio, and how far single rounds strayed from it."""

from __future__ import annotations

from benchmarks.passthrough import Result, ratio_line


def _run(name: str, seconds: float) -> Result:
    return Result(name, 1000, seconds, 0.5, 900, seconds - 0.5, None, None, None, 0, "", True)


def test_the_line_gives_the_ratio_of_the_medians_and_the_spread_of_the_rounds() -> None:
    runs = {
        "eokafka": [_run("eokafka", s) for s in (2.0, 1.0, 4.0)],
        "hand": [_run("hand", s) for s in (1.0, 1.0, 1.0)],
    }
    line = ratio_line("eokafka", "hand", runs)
    assert line.startswith("eokafka/hand: 0.50x total, 0.33x steady-state records/s")
    assert line.endswith("(round by round 0.25x to 1.00x total)")


def test_one_round_has_no_spread() -> None:
    runs = {"eokafka": [_run("eokafka", 1.0)], "quix": [_run("quix", 4.0)]}
    assert ratio_line("eokafka", "quix", runs) == (
        "eokafka/quix: 4.00x total, 7.00x steady-state records/s"
    )
