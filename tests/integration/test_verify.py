"""``eokafka verify`` on destinations with planted missing, duplicated and altered records."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from eokafka.cli import cli
from tests.kafka_helpers import create_topic, produce_records, unique_name

pytestmark = pytest.mark.integration
IDS = range(500)


def _value(n: int, amount: int | None = None) -> dict:
    return {"id": n, "amount": n % 7 if amount is None else amount, "note": f"n{n}"}


def _source(bootstrap: str) -> str:
    topic = unique_name("verify-src")
    create_topic(bootstrap, topic, 3)
    produce_records(bootstrap, topic, [(None, json.dumps(_value(n)).encode()) for n in IDS])
    return topic


def _planted() -> list[dict]:
    """Every source record once, except: 17 missing, 42 twice, 99 with another amount."""
    out = [_value(n) for n in IDS if n not in (17, 99)]
    return [*out, _value(42), _value(99, amount=1000)]


def _run(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["verify", *args, "--json", "--open-wait", "1"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.output)


def _assert_planted_found(report: dict) -> None:
    assert not report["ok"]
    assert report["missing"] == ["17"] and report["missing_count"] == 1
    assert report["duplicated"] == [{"id": "42", "count": 2}]
    assert report["differing"] == [
        {"id": "99", "field": "amount", "source": "1", "destination": "1000"}
    ]
    assert report["extra_count"] == 0
    assert report["source_count"] == len(IDS) and report["destination_count"] == len(IDS)
    assert sum(not r["ok"] for r in report["ranges"]) >= 2  # the ranges of 17, 42 and 99


def test_kafka_destination_clean_and_planted(kafka_bootstrap: str) -> None:
    src = _source(kafka_bootstrap)
    clean = unique_name("verify-clean")
    create_topic(kafka_bootstrap, clean, 2)
    produce_records(kafka_bootstrap, clean, [(None, json.dumps(_value(n)).encode()) for n in IDS])
    code, report = _run(src, f"kafka:{clean}", "--bootstrap-servers", kafka_bootstrap,
                        "--fields", "amount,note")
    assert code == 0 and report["ok"], report
    planted = unique_name("verify-planted")
    create_topic(kafka_bootstrap, planted, 2)
    produce_records(kafka_bootstrap, planted, [(None, json.dumps(v).encode()) for v in _planted()])
    code, report = _run(src, f"kafka:{planted}", "--bootstrap-servers", kafka_bootstrap,
                        "--fields", "amount,note")
    assert code == 1
    _assert_planted_found(report)


def test_postgres_destination_planted(kafka_bootstrap: str, postgres_dsn: str) -> None:
    src = _source(kafka_bootstrap)
    table = unique_name("verify").replace("-", "_")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint, amount numeric, note text)")
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} VALUES (%s, %s, %s)",
                [(v["id"], v["amount"], v["note"]) for v in _planted()],
            )
    code, report = _run(src, f"postgres:{table}", "--dsn", postgres_dsn,
                        "--bootstrap-servers", kafka_bootstrap, "--fields", "amount,note")
    assert code == 1
    _assert_planted_found(report)


def test_files_destination_planted_jsonl_and_csv(kafka_bootstrap: str, tmp_path: Path) -> None:
    src = _source(kafka_bootstrap)
    planted = _planted()
    half = len(planted) // 2
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(v) + "\n" for v in planted[:half]))
    (tmp_path / "b.csv").write_text(
        "id,amount,note\n" + "".join(f"{v['id']},{v['amount']},{v['note']}\n"
                                     for v in planted[half:])
    )
    (tmp_path / ".inprogress").mkdir()
    (tmp_path / ".inprogress" / "c.jsonl").write_text(json.dumps(_value(17)) + "\n")  # unseen
    code, report = _run(src, f"files:{tmp_path}", "--bootstrap-servers", kafka_bootstrap,
                        "--fields", "amount,note")
    assert code == 1
    _assert_planted_found(report)


def test_open_transaction_is_reported(kafka_bootstrap: str) -> None:
    src = _source(kafka_bootstrap)
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
                        [(None, json.dumps(_value(n)).encode()) for n in IDS])
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
