"""Keep docker-compose.yml, deploy/prometheus.yml, the Dockerfile, the dev broker and the
Kafka Streams benchmark in step.

These files reference each other by port, host name and version, and nothing else
notices when one side changes: the stack would start and silently scrape nothing or
point the worker at a listener that does not exist.
"""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus.yml"
DOCKERFILE = ROOT / "Dockerfile"
POM_FILE = ROOT / "eokafka" / "devbroker" / "pom.xml"
KSTREAMS_POM_FILE = ROOT / "benchmarks" / "kstreams" / "pom.xml"
POM_NS = "{http://maven.apache.org/POM/4.0.0}"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD_FILE = GRAFANA / "dashboards" / "eokafka.json"
DATASOURCE_FILE = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return compose["services"]


@pytest.fixture(scope="module")
def kafka_env(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    return _env(services["kafka"])


@pytest.fixture(scope="module")
def worker_args(services: dict[str, dict[str, Any]]) -> list[str]:
    return _command(services["worker"])


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...] form
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    if isinstance(command, str):
        return shlex.split(command)
    return [str(arg) for arg in command]


def _option(args: list[str], name: str) -> str:
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} missing from worker command {args}")


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """'PLAINTEXT://kafka:9092,CONTROLLER://:9093' -> {'PLAINTEXT': ('kafka', 9092), ...}."""
    result: dict[str, tuple[str, int]] = {}
    for item in value.split(","):
        name, sep, address = item.strip().partition("://")
        assert sep, f"listener {item!r} is not NAME://host:port"
        host, _, port = address.rpartition(":")
        result[name] = (host, int(port))
    return result


def _protocol_map(value: str) -> dict[str, str]:
    return dict(item.strip().split(":", 1) for item in value.split(","))


def _port_mappings(service: dict[str, Any]) -> dict[int, int | None]:
    """Container port -> published host port (None when only exposed)."""
    mappings: dict[int, int | None] = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):  # long syntax
            published = entry.get("published")
            mappings[int(entry["target"])] = int(published) if published is not None else None
            continue
        parts = str(entry).split("/")[0].split(":")
        host_port = int(parts[-2]) if len(parts) >= 2 and parts[-2] else None
        mappings[int(parts[-1])] = host_port
    for entry in service.get("expose") or []:
        mappings.setdefault(int(str(entry).split("/")[0]), None)
    return mappings


def _pom_kafka_version(pom: Path = POM_FILE) -> str:
    root = ET.parse(pom).getroot()
    node = root.find(f"{POM_NS}properties/{POM_NS}kafka.version")
    assert node is not None and node.text, "pom.xml lacks the kafka.version property"
    return node.text.strip()


def _scrape_targets() -> list[tuple[str, str]]:
    """(metrics_path, host:port) of every static Prometheus scrape target."""
    config = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    targets: list[tuple[str, str]] = []
    for job in config.get("scrape_configs") or []:
        path = job.get("metrics_path", "/metrics")
        for static in job.get("static_configs") or []:
            targets.extend((path, str(target)) for target in static.get("targets") or [])
    return targets


def test_prometheus_scrapes_the_worker_metrics_port(
    services: dict[str, dict[str, Any]], worker_args: list[str]
) -> None:
    metrics_port = int(_option(worker_args, "--metrics-port"))
    worker_targets = [
        (path, target) for path, target in _scrape_targets() if target.startswith("worker:")
    ]
    assert worker_targets == [("/metrics", f"worker:{metrics_port}")]
    assert "worker" in services


def test_worker_exposes_its_metrics_port(
    services: dict[str, dict[str, Any]], worker_args: list[str]
) -> None:
    metrics_port = int(_option(worker_args, "--metrics-port"))
    assert metrics_port in _port_mappings(services["worker"])
    exposed = re.findall(r"^EXPOSE\s+(.+)$", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    exposed_ports = {int(port.split("/")[0]) for line in exposed for port in line.split()}
    assert metrics_port in exposed_ports


def test_prometheus_mounts_the_checked_config(services: dict[str, dict[str, Any]]) -> None:
    mounts = [str(volume).split(":") for volume in services["prometheus"]["volumes"]]
    sources = {
        (ROOT / source).resolve()
        for source, target, *_ in mounts
        if target == "/etc/prometheus/prometheus.yml"
    }
    assert sources == {PROMETHEUS_FILE.resolve()}


def test_worker_bootstrap_is_the_internal_advertised_listener(
    services: dict[str, dict[str, Any]], kafka_env: dict[str, str], worker_args: list[str]
) -> None:
    advertised = _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    internal_name = kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    host, port = advertised[internal_name]
    # Only the service name (or its hostname) resolves on the compose network.
    assert host in {"kafka", services["kafka"].get("hostname")}
    internal = f"{host}:{port}"
    assert _option(worker_args, "--bootstrap-servers") == internal
    assert _env(services["worker"])["EOKAFKA_BOOTSTRAP_SERVERS"] == internal


def test_kafka_listeners_are_consistent(
    services: dict[str, dict[str, Any]], kafka_env: dict[str, str]
) -> None:
    listeners = _listeners(kafka_env["KAFKA_LISTENERS"])
    advertised = _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = _protocol_map(kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"])
    controller = kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"]

    assert set(listeners) <= set(protocols)
    assert kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    assert controller in listeners and controller not in advertised
    for name, (_, port) in advertised.items():
        assert listeners[name][1] == port, f"{name} advertises a port it does not listen on"
    voter_id, _, voter = kafka_env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert voter_id == kafka_env["KAFKA_NODE_ID"]
    assert int(voter.rpartition(":")[2]) == listeners[controller][1]
    assert set(kafka_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}


def test_kafka_external_listener_is_published_for_the_host(
    services: dict[str, dict[str, Any]], kafka_env: dict[str, str]
) -> None:
    host, port = _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])["EXTERNAL"]
    assert host == "localhost"
    # Clients on the host connect to the advertised port, so it must be published 1:1.
    assert _port_mappings(services["kafka"]).get(port) == port


def test_kafka_image_matches_the_dev_broker_version(services: dict[str, dict[str, Any]]) -> None:
    image, _, tag = services["kafka"]["image"].rpartition(":")
    assert image == "apache/kafka"
    assert tag.split(".")[0] == "4"
    assert tag == _pom_kafka_version()


def test_kafka_streams_benchmark_uses_the_dev_broker_version() -> None:
    """The Kafka Streams contender's client must be the broker's Kafka release."""
    root = ET.parse(KSTREAMS_POM_FILE).getroot()
    artifacts = {
        dep.findtext(f"{POM_NS}artifactId"): dep.findtext(f"{POM_NS}version")
        for dep in root.iter(f"{POM_NS}dependency")
    }
    assert artifacts["kafka-streams"] == "${kafka.version}"
    assert _pom_kafka_version(KSTREAMS_POM_FILE) == _pom_kafka_version()


def test_single_node_replication_settings(kafka_env: dict[str, str]) -> None:
    assert kafka_env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert kafka_env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert kafka_env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_worker_waits_for_a_healthy_kafka(
    services: dict[str, dict[str, Any]], kafka_env: dict[str, str]
) -> None:
    assert services["worker"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    healthcheck = services["kafka"]["healthcheck"]["test"]
    probe = " ".join(healthcheck) if isinstance(healthcheck, list) else healthcheck
    internal = kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    internal_port = _listeners(kafka_env["KAFKA_LISTENERS"])[internal][1]
    assert f"localhost:{internal_port}" in probe


def test_worker_target_exists_and_is_in_the_image(worker_args: list[str]) -> None:
    assert worker_args[:2] == ["eokafka", "run"]
    module, _, attribute = worker_args[2].partition(":")
    source = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    assert source.exists(), f"{source} (worker target {worker_args[2]}) does not exist"
    assert re.search(rf"^{attribute}\s*[:=]", source.read_text(encoding="utf-8"), re.MULTILINE)
    top_package = module.split(".")[0]
    assert re.search(
        rf"^COPY\s+{top_package}\b", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE
    ), f"the Dockerfile does not copy {top_package}/ into the worker image"


def _exported_series() -> dict[str, set[str]]:
    """Every series name eokafka's worker exports, with the labels it carries."""
    from prometheus_client.metrics_core import Metric

    from eokafka.metrics import WorkerMetrics

    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "gauge": ("",),
        "info": ("_info",),
    }
    registry = WorkerMetrics("app", "instance", "0").registry
    series: dict[str, set[str]] = {}
    for collector in list(registry._collector_to_names):  # the registry's collectors
        described: list[Metric] = list(collector.describe())  # type: ignore[attr-defined]
        labels = set(getattr(collector, "_labelnames", ()))
        for family in described:
            for suffix in suffixes[family.type]:
                series[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def _dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_every_dashboard_query_names_a_metric_eokafka_exports() -> None:
    exported = _exported_series()
    assert "eokafka_commit_latency_seconds_bucket" in exported  # the helper sees histograms
    used: set[str] = set()
    for title, expr in _dashboard_exprs():
        names = set(re.findall(r"\b(eokafka_[a-z_]+)\b", expr))
        assert names, f"panel {title!r}: {expr!r} queries no eokafka metric"
        unknown = names - set(exported)
        assert not unknown, f"panel {title!r} queries {unknown}, which eokafka does not export"
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            labels = {label.strip() for label in group.split(",")}
            carried = set().union(*(exported[name] for name in names))
            assert labels <= carried, f"panel {title!r} groups by {labels - carried}"
        used |= names
    # The panels the dashboard promises: throughput, commit latency, lag, aborts, restores,
    # dead letters.
    for name in (
        "eokafka_records_consumed_total",
        "eokafka_records_produced_total",
        "eokafka_commit_latency_seconds_bucket",
        "eokafka_consumer_lag",
        "eokafka_transactions_aborted_total",
        "eokafka_records_restored_total",
        "eokafka_restore_remaining_records",
        "eokafka_records_dead_lettered_total",
    ):
        assert name in used, f"no panel shows {name}"


def test_dashboard_panels_use_the_provisioned_prometheus(
    services: dict[str, dict[str, Any]],
) -> None:
    datasource = yaml.safe_load(DATASOURCE_FILE.read_text(encoding="utf-8"))["datasources"][0]
    assert datasource["type"] == "prometheus"
    host, port = datasource["url"].removeprefix("http://").split(":")
    assert host == "prometheus" and int(port) in _port_mappings(services["prometheus"])
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        for ref in (panel["datasource"], *(t["datasource"] for t in panel["targets"])):
            assert ref == {"type": "prometheus", "uid": datasource["uid"]}, panel["title"]


def test_grafana_mounts_the_checked_provisioning(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    mounts = {
        target: (ROOT / source).resolve()
        for source, target, *_ in (str(v).split(":") for v in grafana["volumes"])
    }
    assert mounts["/etc/grafana/provisioning"] == (GRAFANA / "provisioning").resolve()
    dashboards_dir = mounts["/var/lib/grafana/dashboards"]
    assert dashboards_dir == DASHBOARD_FILE.parent.resolve()
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "eokafka.yml").read_text(encoding="utf-8")
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    home = _env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"/var/lib/grafana/dashboards/{DASHBOARD_FILE.name}"
    assert _port_mappings(grafana).get(3000) == 3000
    assert "prometheus" in grafana["depends_on"]
