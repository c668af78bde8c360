"""The sync monitor's metrics and summary line, and the alert rules that use its metrics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from eokafka.errors import ConfigError
from eokafka.verify import CheckOptions
from eokafka.verify.follow import FollowOptions, SyncMetrics, follow, line_of
from eokafka.verify.report import Report

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "verify-alerts.yml"
OPTS = CheckOptions("b:9092", "orders", "postgres:ledger", group="sync")


def _report(missing: int = 0) -> Report:
    report = Report("kafka:orders", "postgres:ledger", "id", ["amount"], group="sync",
                    source_count=120, missing_count=missing,
                    checked_up_to=[{"partition": 0, "offset": 70, "end": 75},
                                   {"partition": 1, "offset": 50, "end": 50}])
    return report


def _exported(metrics: SyncMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_a_check_becomes_metrics_and_one_line() -> None:
    metrics = SyncMetrics(OPTS)
    metrics.publish(_report(), 0, 0.5)
    metrics.publish(_report(missing=2), 1, 0.5)
    text = _exported(metrics)
    assert 'eokafka_verify_differences{kind="missing"} 2.0' in text
    assert 'eokafka_verify_differences{kind="duplicated"} 0.0' in text
    assert "eokafka_verify_ok 0.0" in text and "eokafka_verify_failing_checks 1.0" in text
    assert "eokafka_verify_records_checked 120.0" in text
    assert 'eokafka_verify_checked_offset{partition="0"} 70.0' in text
    assert 'eokafka_verify_lag_records{partition="0"} 5.0' in text
    assert "eokafka_verify_checks_total 2.0" in text
    assert 'destination="postgres:ledger"' in text
    line = line_of(_report(missing=2), 3)
    assert "checked 120 records below [0]70 [1]50 (lag 5)" in line
    assert "missing 2" in line and line.endswith("DIFFERENCES FOUND (3 checks in a row)")


def test_the_alert_rules_use_metrics_the_monitor_exports() -> None:
    metrics = SyncMetrics(OPTS)
    metrics.publish(_report(), 0, 0.1)
    metrics.errors.inc(0)
    exported = set(re.findall(r"^(eokafka_verify_\w+?)(?:\{| )", _exported(metrics), re.M))
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert rules
    for rule in rules:
        named = set(re.findall(r"eokafka_verify_\w+", rule["expr"] + str(rule["annotations"])))
        assert named and named <= exported | {"eokafka_verify"}, (rule["alert"], named)
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert RULES.name in prometheus["rule_files"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    assert f"./deploy/{RULES.name}:/etc/prometheus/{RULES.name}:ro" in mounts


def test_follow_needs_the_sink_group() -> None:
    with pytest.raises(ConfigError, match="--group"):
        follow(CheckOptions("b:9092", "orders", "postgres:ledger"), FollowOptions(), print)
