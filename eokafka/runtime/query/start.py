"""The query server of one worker slot: its address, its stores' routes, started."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit, urlunsplit

from confluent_kafka.admin import AdminClient

from eokafka.client_configs import admin_config
from eokafka.config import Settings
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.query.desk import QueryDesk
from eokafka.runtime.query.owners import Owners
from eokafka.runtime.query.page import Overview, topology_picture
from eokafka.runtime.query.server import QueryServer, StoreRoute
from eokafka.runtime.query.tls import client_context, server_context, trusted_ca
from eokafka.topology import Topology


def query_url(settings: Settings, slot: int) -> str | None:
    """How the other workers reach slot ``slot``'s server: ``advertised_url`` with its port
    moved by the slot, else the bound host (this host's name when bound to every address)."""
    if settings.http_port is None:
        return None
    port = settings.http_port + slot
    if settings.advertised_url:
        parts = urlsplit(settings.advertised_url.rstrip("/"))
        if parts.port is not None and slot:
            host = parts.hostname or ""
            parts = parts._replace(netloc=f"{host}:{parts.port + slot}")
        return urlunsplit(parts)
    host = settings.http_host
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    elif ":" in host:
        host = f"[{host}]"
    scheme = "http" if settings.http_tls_cert is None else "https"
    return f"{scheme}://{host}:{port}"


def store_routes(topology: Topology) -> dict[str, StoreRoute]:
    """Each store by the input topic whose processor declares it: its key's partition is
    the one that topic's key serde and Kafka's partitioner give it. A window store's keys
    are the windowed stream's, written by the same serde. Stream time stores are internal."""
    routes: dict[str, StoreRoute] = {}
    for source in topology.sources:
        for name in source.stores:
            spec = topology.stores.get(name)
            if spec is None or name in routes or spec.stream_time_of:
                continue
            windowed = spec.window_retention_ms is not None or name in topology.window_stores
            routes[name] = StoreRoute(
                name, source.topic, source.key_serde, spec.backend, windowed,
                topology.window_defs.get(name),
            )  # fmt: skip
    return routes


def start_query_server(
    topology: Topology,
    settings: Settings,
    desk: QueryDesk,
    metrics: WorkerMetrics,
    instance: str,
    slot: int,
) -> QueryServer:
    """Bind the slot's server (``http_port`` + slot on ``http_host``; https with
    ``http_tls_cert``) and serve, with the live page at ``/``."""
    url = query_url(settings, slot)
    assert url is not None and settings.http_port is not None
    cert = settings.http_tls_cert
    serving = None if cert is None else server_context(cert, settings.http_tls_key)
    owners = Owners(
        AdminClient(admin_config(settings)), settings.application_id,
        inputs=tuple(topology.topics), replicas=settings.num_standby_replicas,
    )  # fmt: skip
    picture = topology_picture(topology, settings.application_id)
    verify = client_context(trusted_ca(settings))
    overview = Overview(desk, metrics, settings, owners, picture, instance, url, verify)
    server = QueryServer(
        desk, store_routes(topology), owners, instance, url, settings.http_token,
        settings.transaction_timeout_ms / 1000, time.monotonic, overview.add_routes,
        serving, verify,
    )  # fmt: skip
    server.start(settings.http_host, settings.http_port + slot)
    return server


__all__ = ["query_url", "start_query_server", "store_routes"]
