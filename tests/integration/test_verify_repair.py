"""``eokafka verify --repair`` on planted defects, on every destination kind (no sink running).

The source carries keyed records ``{"id": n, "amount": n % 7, "note": "n<n>"}`` and two
records without a readable id. Each destination gets them with ids missing, ids duplicated,
values altered and records without a readable id of its own. The plan must list exactly
those; ``--repair --yes`` must fix them; ``verify`` must then say OK; and the destination must
equal a plain computation over the source records.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from eokafka.cli import cli
from tests.integration.test_verify import _csv
from tests.kafka_helpers import create_topic, produce_records, read_committed, unique_name

pytestmark = pytest.mark.integration
IDS = range(300)
PARTITIONS = 3
UNKEYED = [json.dumps({"amount": 1}).encode(), b"not json"]
MISSING, DUPLICATED, ALTERED = {17, 18}, {42: 2, 43: 3}, {99: {"amount": 1000}, 123: {"note": ""}}


def _value(n: int) -> dict[str, Any]:
    return {"id": n, "amount": n % 7, "note": f"n{n}"}


def _planted() -> list[dict[str, Any]]:
    """The source's keyed records with the planted defects, as a broken sync left them."""
    out = []
    for n in IDS:
        if n in MISSING:
            continue
        out += [{**_value(n), **ALTERED.get(n, {})}] * DUPLICATED.get(n, 1)
    return out


@pytest.fixture(scope="module")
def source(kafka_bootstrap: str) -> str:
    topic = unique_name("repair-src")
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    produce_records(kafka_bootstrap, topic,
                    [(str(n).encode(), json.dumps(_value(n)).encode()) for n in IDS])
    produce_records(kafka_bootstrap, topic, [(None, v) for v in UNKEYED], partition=1)
    return topic


def _run(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["verify", *args, "--json", "--open-wait", "1"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.output)


def _ids(plan: dict[str, Any], action: str, reason: str) -> Counter[str | None]:
    return Counter(i["id"] for i in plan[action] if i["reason"] == reason)


def _assert_plan(
    plan: dict[str, Any], dest_unkeyed: int, removable: bool, delete_unkeyed: bool = True
) -> None:
    """Exactly the planted defects; the destination's unkeyed records removed or left."""
    assert _ids(plan, "add", "missing") == Counter(str(n) for n in MISSING)
    assert len(plan["add"]) == len(MISSING)
    duplicates = Counter({str(n): c - 1 for n, c in DUPLICATED.items()})
    fixes = Counter(str(n) for n in ALTERED)
    unkeyed = Counter({None: dest_unkeyed}) if dest_unkeyed else Counter()
    if removable:
        removed = unkeyed if delete_unkeyed else Counter()
        assert _ids(plan, "remove", "duplicate") == duplicates
        assert _ids(plan, "remove", "unkeyed") == removed
        assert len(plan["remove"]) == duplicates.total() + removed.total()
        assert _ids(plan, "fix", "differing") == fixes and len(plan["fix"]) == len(ALTERED)
        left = unkeyed - removed
    else:
        assert plan["remove"] == [] and plan["fix"] == []
        left = duplicates + fixes + unkeyed
    assert _ids(plan, "leave", "duplicate") + _ids(plan, "leave", "differing") + _ids(
        plan, "leave", "unkeyed") == left
    assert _ids(plan, "leave", "source-unkeyed") == Counter({None: len(UNKEYED)})
    assert len(plan["leave"]) == left.total() + len(UNKEYED)


def _repair_and_recheck(args: list[str], dest_unkeyed: int) -> dict[str, Any]:
    code, kept = _run(*args, "--repair")
    _assert_plan(kept["plan"], dest_unkeyed, removable=True, delete_unkeyed=False)
    code, dry = _run(*args, "--repair", "--delete-unkeyed")
    assert code == 1 and not dry["report"]["ok"] and dry["done"] is None
    _assert_plan(dry["plan"], dest_unkeyed, removable=True)
    code, done = _run(*args, "--repair", "--yes", "--delete-unkeyed")
    assert code == 1, done  # the source's unkeyed records are left: not accepted yet
    assert done["done"] == {"added": len(MISSING), "removed": 3 + dest_unkeyed,
                            "fixed": len(ALTERED), "steps": done["done"]["steps"]}
    code, after = _run(*args, "--allow-unkeyed")
    assert code == 0 and after["ok"], after
    assert after["destination_unreadable_count"] == 0
    code, again = _run(*args, "--allow-unkeyed", "--repair", "--yes")
    assert code == 0 and again["plan"]["add"] == again["plan"]["remove"] == []
    return after


def _expected() -> list[tuple[int, str, str]]:
    return sorted((n, str(n % 7), f"n{n}") for n in IDS)


def test_postgres_table(kafka_bootstrap: str, postgres_dsn: str, source: str) -> None:
    table = unique_name("repair").replace("-", "_")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint, amount numeric, note text)")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)",
                            [(v["id"], v["amount"], v["note"]) for v in _planted()]
                            + [(None, 5, "no id")])
    args = [source, f"postgres:{table}", "--dsn", postgres_dsn,
            "--bootstrap-servers", kafka_bootstrap, "--fields", "amount,note"]
    _repair_and_recheck(args, dest_unkeyed=1)
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(f"SELECT id, amount::text, note FROM {table}").fetchall()
    assert sorted(rows) == _expected()


def test_files_folder(kafka_bootstrap: str, source: str, tmp_path: Path) -> None:
    """CSV parts as a FileSink of app ``shop`` names them; one holds a record with a newline
    inside quotes, which a rewrite must keep byte for byte. The new part is the app's too."""
    planted = _planted()
    for p, low in enumerate((0, 100, 200)):
        chunk = [v for v in planted if low <= v["id"] < low + 100]
        (tmp_path / f"shop+{source}+{p}+{low}-{low + 100}.csv").write_text(_csv(chunk))
    with open(tmp_path / f"shop+{source}+0+0-100.csv", "ab") as f:
        f.write(b',1,"two\nlines"\n')  # no id: removed with --delete-unkeyed
    clean = tmp_path / f"shop+{source}+2+200-300.csv"  # no defect in it
    before = clean.read_bytes()
    args = [source, f"files:{tmp_path}", "--bootstrap-servers", kafka_bootstrap,
            "--fields", "amount,note"]
    # A sink killed mid-part: <app>+<topic>+<partition>+<instance>+<session>.marks
    marks = tmp_path / ".inprogress" / f"shop+{source}+0+worker-1+0000000000000001.0.marks"
    marks.parent.mkdir()
    marks.write_text(json.dumps({"txn": "t", "first": 100, "end": 120, "length": 9}) + "\n")
    refused = CliRunner().invoke(cli, ["verify", *args, "--repair", "--open-wait", "1"])
    assert refused.exit_code == 2 and "in-progress parts" in refused.output, refused.output
    marks.unlink()
    _repair_and_recheck(args, dest_unkeyed=1)
    rows = []
    for part in sorted(tmp_path.glob("*.csv")):
        with open(part, newline="") as f:
            reader = csv.reader(f)
            assert next(reader) == ["id", "amount", "note"]
            rows += [(int(i), a, n) for i, a, n in reader]
    assert sorted(rows) == _expected()
    assert clean.read_bytes() == before  # a part without defects is not rewritten
    assert all(part.name.startswith(f"shop+{source}+") for part in tmp_path.glob("*.csv"))
    assert not list(tmp_path.glob(".*.repair"))


def _compacted(bootstrap: str) -> str:
    topic = unique_name("repair-table")
    create_topic(bootstrap, topic, PARTITIONS, config={"cleanup.policy": "compact"})
    return topic


def test_compacted_kafka_topic(kafka_bootstrap: str, source: str) -> None:
    """A compacted topic is a table: wrong values are written again last, extra copies get
    tombstones, so the table read back is the source's."""
    topic = _compacted(kafka_bootstrap)
    records = []
    seen: Counter[int] = Counter()
    for v in _planted():
        n = v["id"]
        seen[n] += 1
        key = str(n) if seen[n] == 1 else f"{n}-copy{seen[n]}"  # copies under other keys
        records.append((key.encode(), json.dumps(v).encode()))
    records.append((b"junk", b"not json"))
    produce_records(kafka_bootstrap, topic, records)
    args = [source, f"kafka:{topic}", "--bootstrap-servers", kafka_bootstrap,
            "--fields", "amount,note"]
    _repair_and_recheck(args, dest_unkeyed=1)
    table: dict[bytes, bytes | None] = {}
    for r in read_committed(kafka_bootstrap, topic):
        table[r.key] = r.value  # type: ignore[index]
    live = {k: json.loads(v) for k, v in table.items() if v is not None}
    assert sorted((v["id"], str(v["amount"]), v["note"]) for v in live.values()) == _expected()
    assert {k.decode() for k in live} == {str(n) for n in IDS}


def test_kafka_log_appends_missing_and_reports_the_rest(kafka_bootstrap: str,
                                                        source: str) -> None:
    """A log can only grow: missing records are appended once; duplicates and wrong copies
    are left, named, and keep the check failing."""
    topic = unique_name("repair-log")
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    produce_records(kafka_bootstrap, topic,
                    [(str(v["id"]).encode(), json.dumps(v).encode()) for v in _planted()]
                    + [(None, b"not json")])
    args = [source, f"kafka:{topic}", "--bootstrap-servers", kafka_bootstrap,
            "--fields", "amount,note"]
    code, dry = _run(*args, "--repair")
    assert code == 1
    _assert_plan(dry["plan"], dest_unkeyed=1, removable=False)
    assert all("a Kafka log can't" in i["note"] for i in dry["plan"]["leave"]
               if i["reason"] in ("duplicate", "differing"))
    code, done = _run(*args, "--repair", "--yes", "--delete-unkeyed", "--allow-unkeyed")
    assert code == 1 and done["done"]["added"] == len(MISSING)
    code, after = _run(*args, "--allow-unkeyed")
    assert code == 1
    assert after["missing_count"] == 0
    assert after["duplicated_count"] == len(DUPLICATED)
    assert after["differing_count"] == len(ALTERED)
    found = Counter(json.loads(r.value)["id"] for r in read_committed(kafka_bootstrap, topic)
                    if r.value and r.value.startswith(b"{"))
    assert found == Counter({n: DUPLICATED.get(n, 1) for n in IDS})
    code, again = _run(*args, "--repair", "--yes", "--allow-unkeyed")
    assert again["done"]["added"] == 0  # nothing appended twice
