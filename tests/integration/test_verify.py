"""``eokafka verify`` on planted defects, on every destination kind it reads.

The source topic carries 500 good records and, planted, records without a readable id (no id
field, a null id, a tombstone, a JSON list) and records that are not JSON (bad JSON, bytes
that are not UTF-8). Each destination (a Kafka topic, a PostgreSQL table, a folder of
FileSink parts) gets the good records with one missing, one duplicated and two altered (one
of them only from null to ``""``), and unreadable records of its own. Every planted defect
must be named with its place, and the exit code must be 1; 0 only for a clean destination
with ``--allow-unkeyed``; 2 when the check can't run.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from eokafka.cli import cli
from tests.kafka_helpers import create_topic, produce_records, unique_name

pytestmark = pytest.mark.integration
IDS = range(500)
PARTITIONS = 3
NULL_NOTE = 123  # its note is null in the source, "" in the planted destinations
# Planted on the source's partition 1, after its good records, with what verify must say.
SOURCE_BAD: list[tuple[bytes | None, str]] = [
    (json.dumps({"amount": 1, "note": "no id"}).encode(), "no 'id' field"),
    (json.dumps({"id": None, "amount": 2}).encode(), "'id' is null"),
    (None, "a tombstone (no value)"),
    (b"[1, 2]", "a JSON list, not an object"),
    (b'{"id": 7, "amount"', "not JSON"),
    (b'{"id": 8}\xff', "not UTF-8"),
]
BAD_AT = len([n for n in IDS if n % PARTITIONS == 1])  # their first offset


def _value(n: int) -> dict[str, Any]:
    return {"id": n, "amount": n % 7, "note": None if n == NULL_NOTE else f"n{n}"}


def _good() -> list[dict[str, Any]]:
    return [_value(n) for n in IDS]


def _planted() -> list[dict[str, Any]]:
    """Every source record once, except: 17 missing, 42 twice, 99's amount and 123's note
    (null -> "") altered. The altered ones come first."""
    altered = [{**_value(99), "amount": 1000}, {**_value(NULL_NOTE), "note": ""}]
    return altered + [_value(n) for n in IDS if n not in (17, 99, NULL_NOTE)] + [_value(42)]


def _produce_by_id(bootstrap: str, topic: str, values: list[dict[str, Any]]) -> None:
    for p in range(PARTITIONS):
        batch = [(None, json.dumps(v).encode()) for v in values if v["id"] % PARTITIONS == p]
        produce_records(bootstrap, topic, batch, partition=p)


@pytest.fixture(scope="module")
def source(kafka_bootstrap: str) -> str:
    topic = unique_name("verify-src")
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    _produce_by_id(kafka_bootstrap, topic, _good())
    produce_records(kafka_bootstrap, topic, [(None, v) for v, _ in SOURCE_BAD], partition=1)
    return topic


def _run(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["verify", *args, "--json", "--open-wait", "1"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.output)


def _assert_source_unreadable(report: dict[str, Any], source: str) -> None:
    found = [(u["where"], u["problem"]) for u in report["source_unreadable"]]
    assert [w for w, _ in found] == [f"{source}[1]@{BAD_AT + i}" for i in range(len(SOURCE_BAD))]
    for (_, problem), (_, expected) in zip(found, SOURCE_BAD, strict=True):
        assert problem.startswith(expected), (problem, expected)
    assert report["source_unreadable_count"] == len(SOURCE_BAD)
    assert report["source_count"] == len(IDS)


def _assert_planted_found(report: dict[str, Any], source: str, unreadable: list[str]) -> None:
    assert not report["ok"]
    assert report["missing"] == [{"id": "17", "where": f"{source}[2]@5"}]
    assert [(d["id"], d["count"], len(d["where"])) for d in report["duplicated"]] == [("42", 2, 2)]
    assert sorted((d["id"], d["field"], d["source"], d["destination"])
                  for d in report["differing"]) == [
        ("123", "note", None, ""),
        ("99", "amount", "1", "1000"),
    ]
    assert report["extra_count"] == 0 and report["destination_count"] == len(IDS)
    _assert_source_unreadable(report, source)
    assert [u["where"] for u in report["destination_unreadable"]] == unreadable
    assert report["destination_unreadable_count"] == len(unreadable)
    assert sum(not r["ok"] for r in report["ranges"]) >= 2  # the ranges of 17, 42, 99, 123


def _assert_clean_but_unkeyed(args: list[str], source: str) -> None:
    """A destination with every keyed record: the unkeyed source records still fail it,
    unless --allow-unkeyed, which still names them."""
    code, report = _run(*args)
    assert code == 1 and not report["ok"]
    assert report["missing_count"] == report["differing_count"] == 0
    _assert_source_unreadable(report, source)
    code, report = _run(*args, "--allow-unkeyed")
    assert code == 0 and report["ok"], report
    _assert_source_unreadable(report, source)
    human = CliRunner().invoke(cli, ["verify", *args, "--open-wait", "1"])
    assert human.exit_code == 1
    assert f"{source}[1]@{BAD_AT}: no 'id' field" in human.output
    assert "OK" not in human.output.splitlines()[-1]


def test_kafka_destination(kafka_bootstrap: str, source: str) -> None:
    planted = unique_name("verify-planted")
    create_topic(kafka_bootstrap, planted, PARTITIONS)
    _produce_by_id(kafka_bootstrap, planted, _planted())
    at = len([v for v in _planted() if v["id"] % PARTITIONS == 0])
    produce_records(kafka_bootstrap, planted,
                    [(None, b"garbage"), (None, b'{"id": null}'), (None, None)], partition=0)
    args = [source, f"kafka:{planted}", "--bootstrap-servers", kafka_bootstrap,
            "--fields", "amount,note"]
    code, report = _run(*args)
    assert code == 1
    _assert_planted_found(report, source, [f"{planted}[0]@{at + i}" for i in range(3)])
    assert [u["problem"].split(" (")[0] for u in report["destination_unreadable"]] == [
        "not JSON", "'id' is null", "a tombstone"
    ]

    clean = unique_name("verify-clean")
    create_topic(kafka_bootstrap, clean, 2)
    produce_records(kafka_bootstrap, clean, [(None, json.dumps(v).encode()) for v in _good()])
    _assert_clean_but_unkeyed(
        [source, f"kafka:{clean}", "--bootstrap-servers", kafka_bootstrap,
         "--fields", "amount,note"],
        source,
    )


def _table(dsn: str, rows: list[tuple[Any, ...]]) -> str:
    table = unique_name("verify").replace("-", "_")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint, amount numeric, note text)")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)", rows)
    return table


def test_postgres_destination(kafka_bootstrap: str, postgres_dsn: str, source: str) -> None:
    rows = [(v["id"], v["amount"], v["note"]) for v in _planted()] + [(None, 5, "x")]
    table = _table(postgres_dsn, rows)
    args = [source, f"postgres:{table}", "--dsn", postgres_dsn,
            "--bootstrap-servers", kafka_bootstrap, "--fields", "amount,note"]
    code, report = _run(*args)
    assert code == 1
    with psycopg.connect(postgres_dsn) as conn:
        (place,) = conn.execute(f"SELECT ctid::text FROM {table} WHERE id IS NULL").fetchone()
    _assert_planted_found(report, source, [f"{table} row {place}"])
    assert report["destination_unreadable"][0]["problem"] == "'id' is null"

    clean = _table(postgres_dsn, [(v["id"], v["amount"], v["note"]) for v in _good()])
    _assert_clean_but_unkeyed(
        [source, f"postgres:{clean}", "--dsn", postgres_dsn,
         "--bootstrap-servers", kafka_bootstrap, "--fields", "amount,note"],
        source,
    )


def _csv(values: list[dict[str, Any]]) -> str:
    """CSV as connectors.files.FileSink writes it (a header, None as an empty field)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "amount", "note"])
    for v in values:
        writer.writerow([v["id"], v["amount"], v["note"]])
    return out.getvalue()


def _parts(folder: Path, topic: str, values: list[dict[str, Any]]) -> tuple[Path, Path]:
    """Finished parts named as the FileSink names them: JSON Lines, then CSV."""
    half = len(values) // 2
    jsonl = folder / f"{topic}+0+0-{half}.jsonl"
    jsonl.write_text("".join(json.dumps(v) + "\n" for v in values[:half]))
    table = folder / f"{topic}+1+0-{len(values) - half}.csv"
    table.write_text(_csv(values[half:]))
    return jsonl, table


def test_files_destination(kafka_bootstrap: str, source: str, tmp_path: Path) -> None:
    planted = _planted()  # 123's note ("" for null) is in the JSON Lines part
    jsonl, table = _parts(tmp_path, source, planted)
    lines = len(planted) // 2
    with open(jsonl, "ab") as f:
        f.write(b'{"amount": 1}\n' + b"not json\n" + b'{"id": 9, "note": "\xff"}\n')
    with open(table, "a") as f:
        f.write(",5,x\n")
    (tmp_path / ".inprogress").mkdir()
    (tmp_path / ".inprogress" / "c.jsonl").write_text(json.dumps(_value(17)) + "\n")  # unseen
    rows = len(planted) - lines + 1  # the header is line 1
    args = [source, f"files:{tmp_path}", "--bootstrap-servers", kafka_bootstrap,
            "--fields", "amount,note"]
    code, report = _run(*args)
    assert code == 1
    _assert_planted_found(
        report,
        source,
        [f"{jsonl}:{lines + 1}", f"{jsonl}:{lines + 2}", f"{jsonl}:{lines + 3}",
         f"{table}:{rows + 1}"],
    )
    assert [u["problem"].split(" (")[0] for u in report["destination_unreadable"]] == [
        "no 'id' field", "not JSON", "not UTF-8", "'id' is empty"
    ]

    clean = tmp_path / "clean"
    clean.mkdir()
    _parts(clean, source, _good())  # null as an empty CSV field: the way CSV says it
    _assert_clean_but_unkeyed(
        [source, f"files:{clean}", "--bootstrap-servers", kafka_bootstrap,
         "--fields", "amount,note"],
        source,
    )
    code = CliRunner().invoke(
        cli, ["verify", source, f"files:{tmp_path / 'nowhere'}", "--bootstrap-servers",
              kafka_bootstrap]
    ).exit_code
    assert code == 2  # could not check: not the same as "differences found"


def test_open_transaction_is_reported(kafka_bootstrap: str) -> None:
    src = unique_name("verify-src")
    create_topic(kafka_bootstrap, src, 3)
    produce_records(kafka_bootstrap, src, [(None, json.dumps(v).encode()) for v in _good()])
    producer = Producer({"bootstrap.servers": kafka_bootstrap,
                         "transactional.id": unique_name("verify-open")})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(src, json.dumps(_value(1)).encode(), partition=0)
    producer.flush(30)
    try:
        clean = unique_name("verify-clean")
        create_topic(kafka_bootstrap, clean, 1)
        produce_records(kafka_bootstrap, clean,
                        [(None, json.dumps(v).encode()) for v in _good()])
        code, report = _run(src, f"kafka:{clean}", "--bootstrap-servers", kafka_bootstrap)
        assert code == 1
        assert report["missing_count"] == 0 and report["duplicated_count"] == 0
        assert [t["partition"] for t in report["open_transactions"]] == [0]
        human = CliRunner().invoke(
            cli, ["verify", src, f"kafka:{clean}", "--bootstrap-servers", kafka_bootstrap,
                  "--open-wait", "0"]
        )
        assert human.exit_code == 1 and f"open transaction on {src}[0]" in human.output
    finally:
        producer.abort_transaction(30)
