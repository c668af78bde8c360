"""How a repair plan is made from a comparison: which copy is kept, what is added, removed,
fixed or left and why, and which records a line leaves out as in flight."""

from __future__ import annotations

import json
from typing import Any

from eokafka.verify import Checked
from eokafka.verify.compare import Findings, Report, compare
from eokafka.verify.line import Line
from eokafka.verify.records import Side, from_json
from eokafka.verify.repair.build import build_plan
from eokafka.verify.repair.plan import Capabilities

ALL = Capabilities(remove=True, fix=True)
LOG = Capabilities(remove=False, fix=False, why_not="a log")


def _side(name: str, values: list[tuple[int, int, Any]]) -> Side:
    """Records at (partition, offset); dicts are JSON-encoded, bytes taken as they are."""
    reads = [
        from_json((p, o), v if isinstance(v, bytes) else json.dumps(v).encode(), "id",
                  ["amount"])
        for p, o, v in values
    ]
    return Side(name, reads, lambda loc: f"{name}[{loc[0]}]@{loc[1]}")


def _check(source: list[tuple[int, int, Any]], dest: list[tuple[int, int, Any]],
           line: Line | None = None) -> Checked:
    report = Report("s", "d", "id", ["amount"])
    findings = Findings()
    src, dst = _side("s", source), _side("d", dest)
    compare(report, src, dst, 4, in_flight=None if line is None else line.in_flight,
            findings=findings)
    return Checked(report, findings, src, dst, line)


def _plan(checked: Checked, can: Capabilities = ALL, extra: bool = False,
          unkeyed: bool = False) -> list[tuple[str, str, str | None, str | None]]:
    plan = build_plan(checked, can, extra, unkeyed)
    return sorted((i.action, i.reason, i.id, i.where) for i in plan.items)


def _rec(n: int, amount: int | None = None) -> dict[str, Any]:
    return {"id": n, "amount": n if amount is None else amount}


SOURCE = [(0, n, _rec(n)) for n in range(6)]


def test_missing_duplicated_differing_extra_and_unkeyed() -> None:
    dest = [
        (0, 0, _rec(0)),
        (0, 1, _rec(1, 99)), (0, 2, _rec(1)),  # a wrong copy first, then a right one
        (0, 3, _rec(2, 7)), (0, 4, _rec(2, 8)),  # two wrong copies
        (0, 5, _rec(3, 30)),  # one wrong copy
        (0, 6, _rec(4)), (0, 7, _rec(4)), (0, 8, _rec(4)),  # three right copies
        (0, 9, _rec(77)),  # not in the source
        (0, 10, b"garbage"),
    ]  # 5 is missing
    checked = _check(SOURCE, dest)
    assert _plan(checked) == sorted([
        ("add", "missing", "5", None),
        ("remove", "duplicate", "1", "d[0]@1"),  # the right copy stays
        ("remove", "duplicate", "2", "d[0]@4"),  # the first copy stays, fixed
        ("fix", "differing", "2", "d[0]@3"),
        ("fix", "differing", "3", "d[0]@5"),
        ("remove", "duplicate", "4", "d[0]@7"),
        ("remove", "duplicate", "4", "d[0]@8"),
        ("leave", "extra", "77", "d[0]@9"),
        ("leave", "unkeyed", None, "d[0]@10"),
    ])
    removed = _plan(checked, extra=True, unkeyed=True)
    assert ("remove", "extra", "77", "d[0]@9") in removed
    assert ("remove", "unkeyed", None, "d[0]@10") in removed


def test_a_log_only_adds() -> None:
    dest = [(0, 0, _rec(0)), (0, 1, _rec(0)), (0, 2, _rec(1, 9)), (0, 3, b"x")]
    checked = _check(SOURCE[:3], dest)
    plan = build_plan(checked, LOG, True, True)
    assert sorted((i.action, i.reason, i.id) for i in plan.items) == [
        ("add", "missing", "2"),
        ("leave", "differing", "1"),
        ("leave", "duplicate", "0"),
        ("leave", "unkeyed", None),
    ]
    assert {i.note for i in plan.items if i.action == "leave"} == {"a log"}
    assert plan.still_failing(allow_unkeyed=True)


def test_source_records_that_cannot_be_matched_are_left() -> None:
    source = [*SOURCE[:3], (1, 0, _rec(1, 5)), (1, 1, b"not json")]  # 1 twice, one unkeyed
    dest = [(0, 0, _rec(0)), (0, 1, _rec(1, 77))]  # 2 missing, 1 wrong (but which is right?)
    checked = _check(source, dest)
    plan = build_plan(checked, ALL, False, False)
    assert sorted((i.action, i.reason, i.id) for i in plan.items) == [
        ("add", "missing", "2"),
        ("leave", "source-repeated", "1"),
        ("leave", "source-unkeyed", None),
    ]
    assert plan.still_failing(allow_unkeyed=True)  # the repeated id
    ok = build_plan(_check([*SOURCE[:2], (1, 1, b"not json")], [(0, 0, _rec(0))]), ALL,
                    False, False)
    assert not ok.still_failing(allow_unkeyed=True) and ok.still_failing(allow_unkeyed=False)


def test_records_after_the_line_and_their_copies_are_in_flight() -> None:
    """Partition 0 committed up to 3: records 3.. are not expected yet, and the copies of
    their ids (written before the commit, e.g. by a sink that keeps offsets in its
    database) are neither extra nor checked. Partition 1 committed nothing."""
    source = [*SOURCE, (1, 0, _rec(10)), (1, 1, _rec(11))]
    dest = [(0, 0, _rec(0)), (0, 1, _rec(1, 5)), (0, 2, _rec(4)), (0, 3, _rec(10, 1))]
    line = Line("g", "s", {0: 3})
    checked = _check(source, dest, line)
    report = checked.report
    assert report.source_count == 3 and report.in_flight_count == 5
    assert report.destination_count == 2 and report.destination_in_flight_count == 2
    assert report.extra_count == 0
    assert _plan(checked) == [("add", "missing", "2", None), ("fix", "differing", "1", "d[0]@1")]
    assert line.in_flight((1, 0)) and not line.in_flight((0, 2))


def test_an_id_both_below_and_after_the_line_is_repeated_in_the_source() -> None:
    source = [(0, 0, _rec(0)), (0, 1, _rec(1)), (0, 2, _rec(0, 9))]
    checked = _check(source, [(0, 0, _rec(0)), (0, 1, _rec(1))], Line("g", "s", {0: 2}))
    assert checked.report.source_duplicated_count == 1
    assert [(i.action, i.reason, i.id) for i in build_plan(checked, ALL, False, False).items] \
        == [("leave", "source-repeated", "0")]


def test_a_line_lowered_for_invisible_writes_says_why() -> None:
    line = Line("g", "s", {0: 10, 1: 4})
    line.lower(0, 6, "an in-progress part from offset 6")
    line.lower(1, 9, "not lower: ignored")
    assert line.offsets == {0: 6, 1: 4}
    assert line.as_list({0: 12, 1: 4}) == [
        {"partition": 0, "offset": 6, "end": 12, "committed": 10,
         "below_commit_because": "an in-progress part from offset 6"},
        {"partition": 1, "offset": 4, "end": 4, "committed": 4},
    ]
