"""The live page at ``/`` and the routes it reads: this worker, the group, dead letters.

Plain HTML with a little script, served from the package: no CDN, it works offline. The
page (``page.html``) holds no data; it reads ``/v1/cluster`` (every worker of the group and
its tasks), ``/v1/stores``, ``/v1/dead-letters`` and the key routes, with the bearer token
the user types when the server wants one.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from importlib.resources import files
from typing import Any

import aiohttp
from aiohttp import web
from confluent_kafka import Consumer, KafkaError, TopicPartition

from eokafka.client_configs import restore_consumer_config
from eokafka.config import Settings
from eokafka.describe import render
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.query.desk import QueryDesk
from eokafka.runtime.query.owners import Owners
from eokafka.topology import Topology, topology_graph

_SHOWN_BYTES = 500  # of a dead letter's key, value or header
_DEAD_LETTERS_MAX = 100
_TIMEOUT_S = 10.0


def topology_picture(topology: Topology, application_id: str) -> dict[str, str | None]:
    """The ``describe`` drawing: as SVG when Graphviz's dot is installed, always as text."""
    graph = topology_graph(topology, application_id)
    svg = None
    dot = shutil.which("dot")
    if dot is not None:
        proc = subprocess.run(
            [dot, "-Tsvg"], input=render(graph, "dot"), capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        if proc.returncode == 0:
            svg = proc.stdout[proc.stdout.find("<svg") :]
    return {"svg": svg, "text": render(graph, "text")}


def _gauge(metrics: WorkerMetrics, name: str) -> dict[tuple[str, str], float]:
    """A labelled gauge's values by (first label, partition)."""
    gauge = getattr(metrics, name)
    out: dict[tuple[str, str], float] = {}
    for family in gauge.collect():
        for sample in family.samples:
            labels = sample.labels
            first = labels.get("store", labels.get("topic", ""))
            out[(first, labels.get("partition", ""))] = sample.value
    return out


def _shown(data: bytes | None) -> str | None:
    if data is None:
        return None
    text = data[:_SHOWN_BYTES].decode("utf-8", errors="replace")
    return text + ("..." if len(data) > _SHOWN_BYTES else "")


class Overview:
    def __init__(
        self,
        desk: QueryDesk,
        metrics: WorkerMetrics,
        settings: Settings,
        owners: Owners,
        picture: dict[str, str | None],
        instance: str,
        url: str,
        verify_tls: ssl.SSLContext | None = None,
    ) -> None:
        """``verify_tls``: how other workers' https certificates are verified (None: the
        system's CAs)."""
        self.desk, self.metrics, self.settings, self.owners = desk, metrics, settings, owners
        self.picture, self.instance, self.url = picture, instance, url
        self._verify_tls = verify_tls
        self.html = files("eokafka.runtime.query").joinpath("page.html").read_bytes()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.page)
        app.router.add_get("/v1/topology", self.topology)
        app.router.add_get("/v1/status", self.status)
        app.router.add_get("/v1/cluster", self.cluster)
        app.router.add_get("/v1/dead-letters", self.dead_letters)

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.html, content_type="text/html", charset="utf-8")

    async def topology(self, request: web.Request) -> web.Response:
        return web.json_response(self.picture)

    def _status(self) -> dict[str, Any]:
        status = self.desk.status
        keys = _gauge(self.metrics, "store_keys")
        remaining = _gauge(self.metrics, "restore_remaining")
        lag = _gauge(self.metrics, "lag")
        tasks = []
        for t in status.tasks:
            p = str(t.partition)
            tasks.append({
                "task": t.name, "partition": t.partition, "state": t.state,
                "restoring": {s: remaining.get((s, p)) for s in t.restoring},
                "lag": sum(v for (_, part), v in lag.items() if part == p),
            })  # fmt: skip
        stores: dict[str, float] = {}
        for (store, _), n in keys.items():
            stores[store] = stores.get(store, 0) + n
        return {
            "instance": self.instance, "url": self.url, "ready": status.ready,
            "resyncing": status.resyncing, "tasks": tasks, "store_keys": stores,
            "settings": self.settings.shown(),
        }  # fmt: skip

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self._status(), dumps=_dumps)

    async def cluster(self, request: web.Request) -> web.Response:
        """Every member of the group, with its own status where it serves one."""
        view = await asyncio.to_thread(self.owners.view)
        headers = {}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)

        async def one(url: str | None) -> dict[str, Any] | None:
            if url is None:
                return None
            if url == self.url:
                return self._status()
            try:
                connector = aiohttp.TCPConnector(ssl=self._verify_tls or True)
                async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                    async with session.get(url + "/v1/status", headers=headers) as got:
                        body: dict[str, Any] = await got.json()
                        return body if got.status == 200 else None
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return None

        statuses = await asyncio.gather(*(one(m.url) for m in view.members))
        members = [
            {"instance": m.instance, "url": m.url,
             "partitions": [f"{tp.topic}[{tp.partition}]" for tp in m.partitions],
             "status": s}
            for m, s in zip(view.members, statuses, strict=True)
        ]  # fmt: skip
        return web.json_response({"stable": view.stable, "members": members}, dumps=_dumps)

    async def dead_letters(self, request: web.Request) -> web.Response:
        try:
            limit = min(_DEAD_LETTERS_MAX, max(1, int(request.query.get("limit", "20"))))
        except ValueError:
            limit = 20
        records = await asyncio.to_thread(self._last_dead_letters, limit)
        return web.json_response(
            {"topic": self.settings.dlq_topic, "records": records}, dumps=_dumps
        )

    def _last_dead_letters(self, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` committed records of each partition of the dead-letter topic,
        newest first (read_committed: aborted attempts are not dead letters)."""
        topic = self.settings.dlq_topic
        conf = restore_consumer_config(self.settings)  # assign only, read_committed
        conf["client.id"] = f"{self.settings.application_id}-page"
        consumer = Consumer(conf)
        try:
            meta = consumer.list_topics(topic, timeout=_TIMEOUT_S).topics.get(topic)
            if meta is None or meta.error is not None:
                return []
            wanted: list[TopicPartition] = []
            for p in meta.partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=_TIMEOUT_S
                )
                if high > low:
                    wanted.append(TopicPartition(topic, p, max(low, high - limit)))
            if not wanted:
                return []
            consumer.assign(wanted)
            out: list[dict[str, Any]] = []
            open_parts = {tp.partition for tp in wanted}
            while open_parts:
                msgs = consumer.consume(500, _TIMEOUT_S)
                if not msgs:
                    break
                for msg in msgs:
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            open_parts.discard(msg.partition())
                        continue
                    out.append({
                        "partition": msg.partition(), "offset": msg.offset(),
                        "timestamp": msg.timestamp()[1], "key": _shown(msg.key()),
                        "value": _shown(msg.value()),
                        "headers": {k: _shown(v) for k, v in (msg.headers() or [])},
                    })  # fmt: skip
            out.sort(key=lambda r: r["timestamp"], reverse=True)
            return out[:limit]
        finally:
            consumer.close()


def _dumps(body: Any) -> str:
    import orjson

    return orjson.dumps(body, default=str).decode()
