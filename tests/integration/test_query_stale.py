"""Stale reads across workers: a worker with neither the key's task nor a standby of it
forwards ``?stale=1`` to a worker that keeps a standby, found from the group's description."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import app_topics, wait_for
from tests.integration.test_queries import (
    SETTLE_S,
    STORE,
    Node,
    _inputs,
    _nodes,
    _ready,
    _stop_all,
)
from tests.kafka_helpers import end_offsets, produce_records, read_committed
from tests.totals_reference import check_running_totals

pytestmark = pytest.mark.integration


def test_a_stale_read_is_forwarded_to_another_workers_standby(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Three workers, two partitions, one standby each: for each partition one worker keeps
    neither the task nor a standby. Asked with ?stale=1, it forwards to the standby's worker,
    whose answer says ``standby`` and its lag and catches up with the committed total."""
    names = app_topics(kafka_bootstrap, "query-stale-fwd", 2)
    inputs = _inputs(120, seed=9)
    produce_records(kafka_bootstrap, names.src, inputs)
    env = {**names.env, "TEST_STANDBYS": "1"}
    nodes = _nodes(kafka_bootstrap, tmp_path, env, ["f0", "f1", "f2"])
    try:
        for n in nodes:
            n.proc.start()
        outputs = read_committed(kafka_bootstrap, names.out, len(inputs), timeout=SETTLE_S)
        final = check_running_totals(inputs, outputs)
        wait_for(lambda: _ready(nodes), SETTLE_S, "three workers ready")
        log_end = end_offsets(kafka_bootstrap, f"{names.app_id}-{STORE}-changelog")
        seen: dict[tuple[str, str], dict[str, object]] = {}

        def ask(node: Node, key: str) -> dict[str, object] | None:
            got = node.get(f"/v1/stores/{STORE}/keys/{key}?stale=1")
            if got.status_code == 503:
                assert got.headers.get("Retry-After"), got.text
                return None
            assert got.status_code == 200, f"{node.name} {key}: {got.status_code} {got.text}"
            answer: dict[str, object] = got.json()
            return answer

        def forwarded_standby_answers_caught_up() -> bool:
            """Every (worker, key) whose stale read another worker served: from a standby,
            caught up. At least one such pair per partition."""
            seen.clear()
            for node in nodes:
                for key in sorted(final):
                    answer = ask(node, key)
                    if answer is None:
                        return False
                    served = answer["served_by"]
                    assert isinstance(served, dict)
                    if served["instance"] == node.name:
                        continue  # its own task or its own standby
                    seen[(node.name, key)] = answer
                    if not answer.get("standby") or answer["lag"] != 0:
                        return False
            parts = {a["partition"] for a in seen.values()}
            return parts == {0, 1}

        try:
            wait_for(forwarded_standby_answers_caught_up, SETTLE_S,
                     "stale reads forwarded to caught-up standbys")  # fmt: skip
        except AssertionError:
            raise AssertionError(f"forwarded stale answers: {seen}") from None
        for (asked, key), answer in seen.items():
            served = answer["served_by"]
            assert isinstance(served, dict) and served["instance"] != asked
            assert answer["standby"] is True and answer["lag"] == 0, answer
            assert answer["value"] == final[key], (asked, key, answer)
            p = answer["partition"]
            assert isinstance(p, int) and answer["changelog_offset"] <= log_end[p], answer
            fresh = next(n for n in nodes if n.name == asked).key(key)
            assert fresh.status_code == 200 and "standby" not in fresh.json()
            assert fresh.json()["served_by"]["instance"] != served["instance"], (
                "the owner and the standby of a partition are the same worker"
            )
    finally:
        _stop_all(nodes)
