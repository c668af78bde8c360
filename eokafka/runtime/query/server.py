"""The query server of one worker: aiohttp in a thread of its own, JSON answers.

Routes (docs/queries.md):

- ``GET /healthz``: 200 while the loop stepped within the liveness bound and the producer is
  made; 503 otherwise. ``GET /readyz``: 200 when every assigned task runs, none restores.
- ``GET /v1/stores``: the app's stores, their input topic and partition count.
- ``GET /v1/stores/{store}/keys/{key}``: a key's committed value, its partition and the
  offsets it reflects; asked of any worker, forwarded to the owner of the key's partition
  (``?stale=1``: a standby replica on the worker asked answers, with its lag).
- ``GET /v1/stores/{store}/windows/{key}?from=&to=``: a key's open windows overlapping
  [from, to) (epoch ms) in a window store.
- ``GET /v1/stores/{store}/partitions/{p}/keys``: a page of one partition's keys
  (``limit``, ``after``), or a ``prefix`` or a range [``start``, ``end``).

Answers come from the worker loop (desk.py), never from this thread: the stores are the
loop's. The health routes are open; with ``http_token`` set every other route wants
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from eokafka.errors import ConfigError
from eokafka.runtime.query.desk import NotHere, Query, QueryDesk, Status
from eokafka.runtime.query.keys import encode_key, read_key
from eokafka.runtime.query.owners import Member, Owners, key_partition
from eokafka.runtime.query.reads import KeyQuery, ScanQuery, WindowQuery
from eokafka.runtime.query.refusal import QueryError
from eokafka.runtime.tasks.standby import STANDBY_BACKENDS
from eokafka.serdes import Serde
from eokafka.windows.definition import Windows

log = logging.getLogger("eokafka.query")
FORWARDED = "X-Eokafka-Forwarded"
_LOOP_WAIT_S = 10.0  # a query the loop has not answered by then: 503, ask again
_FORWARD_TIMEOUT_S = 15.0
RETRY_AFTER_S = 1
_OPEN = frozenset({"/healthz", "/readyz", "/"})  # no data: probes and the page's own HTML


@dataclass(frozen=True)
class StoreRoute:
    """How a store's keys are partitioned: by the key serde of the input topic it serves."""

    name: str
    topic: str
    key_serde: Serde
    backend: str
    windowed: bool = False
    windows: Windows | None = None  # the window definition, when the DSL made the store


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body, default=str), status=status, headers=headers,
        content_type="application/json",
    )  # fmt: skip


def _refusal(exc: QueryError) -> web.Response:
    headers = None
    if exc.retry_after is not None:
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    return _json({"error": str(exc), "status": exc.status}, exc.status, headers)


class QueryServer:
    def __init__(
        self,
        desk: QueryDesk,
        stores: dict[str, StoreRoute],
        owners: Owners,
        instance: str,
        url: str,
        token: str | None,
        liveness_s: float,
        clock: Callable[[], float],
        routes: Callable[[web.Application], None] | None = None,
        serve_tls: ssl.SSLContext | None = None,
        verify_tls: ssl.SSLContext | None = None,
    ) -> None:
        """``routes`` adds more routes (the live page's, page.py) under the same guard;
        ``serve_tls``: https (None: http); ``verify_tls``: what forwards verify with (None:
        the system's CAs)."""
        self.desk = desk
        self.stores = stores
        self.owners = owners
        self.instance = instance
        self.url = url
        self.token = token
        self.liveness_s = liveness_s
        self.clock = clock
        self._more_routes = routes
        self._serve_tls, self._verify_tls = serve_tls, verify_tls
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, host: str, port: int) -> None:
        """Bind and serve in a daemon thread; a port that can't be bound is a ConfigError."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._bind(host, port))
            except BaseException as exc:  # noqa: BLE001  the starting thread re-raises it
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._unbind())
            loop.close()

        self._thread = threading.Thread(target=run, name="eokafka-query", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            exc = failure[0]
            raise ConfigError(f"http_port {port} on {host}: {exc}") from exc

    async def _bind(self, host: str, port: int) -> None:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/v1/stores", self.list_stores)
        app.router.add_get("/v1/stores/{store}/keys/{key:.+}", self.get_key)
        app.router.add_get("/v1/stores/{store}/windows/{key:.+}", self.get_windows)
        app.router.add_get("/v1/stores/{store}/partitions/{partition}/keys", self.scan)
        if self._more_routes is not None:
            self._more_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, ssl_context=self._serve_tls).start()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=_FORWARD_TIMEOUT_S),
            connector=aiohttp.TCPConnector(ssl=self._verify_tls or True),
        )

    async def _unbind(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    # -- access --------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.token is not None and request.path not in _OPEN:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return _json(
                    {"error": "a bearer token is required (Authorization: Bearer <token>)"},
                    401, {"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
        try:
            return await handler(request)
        except QueryError as exc:
            return _refusal(exc)

    # -- health --------------------------------------------------------------------------

    def _health(self) -> tuple[Status, float]:
        status = self.desk.status
        return status, self.clock() - status.polled_at

    async def healthz(self, request: web.Request) -> web.Response:
        status, since = self._health()
        healthy = since <= self.liveness_s and status.producer_ready
        body = {
            "healthy": healthy,
            "instance": self.instance,
            "loop_polled_seconds_ago": round(since, 3),
            "liveness_bound_seconds": self.liveness_s,
            "producer_ready": status.producer_ready,
        }
        return _json(body, 200 if healthy else 503)

    async def readyz(self, request: web.Request) -> web.Response:
        status, since = self._health()
        ready = status.ready and since <= self.liveness_s
        body = {
            "ready": ready,
            "instance": self.instance,
            "resyncing": status.resyncing,
            "tasks": [
                {"task": t.name, "partition": t.partition, "state": t.state,
                 "restoring": list(t.restoring)}
                for t in status.tasks
            ],
        }  # fmt: skip
        return _json(body, 200 if ready else 503, None if ready else {"Retry-After": "1"})

    # -- queries -------------------------------------------------------------------------

    @staticmethod
    def _read_key(request: web.Request, route: StoreRoute, text: str | None) -> Any:
        if text is None:
            return None
        return read_key(text, route.key_serde, route.name, request.query.get("key_format"))

    def _route(self, request: web.Request) -> StoreRoute:
        name = request.match_info["store"]
        route = self.stores.get(name)
        if route is None:
            raise QueryError(404, f"no store {name!r}; stores: {', '.join(sorted(self.stores))}")
        return route

    async def list_stores(self, request: web.Request) -> web.Response:
        out = []
        for route in self.stores.values():
            partitions = await asyncio.to_thread(self.owners.partitions, route.topic)
            out.append({"store": route.name, "topic": route.topic, "partitions": partitions,
                        "backend": route.backend, "windowed": route.windowed})  # fmt: skip
        return _json({"stores": out, "instance": self.instance, "url": self.url})

    async def _key(self, request: web.Request, route: StoreRoute) -> tuple[Any, bytes, int]:
        """The key of the path (keys.py: as text or JSON text), its bytes by the topic's key
        serde and its partition."""
        key = self._read_key(request, route, request.match_info["key"])
        data = encode_key(key, route.key_serde, route.name)
        partitions = await asyncio.to_thread(self.owners.partitions, route.topic)
        return key, data, key_partition(data, partitions)

    async def get_key(self, request: web.Request) -> web.Response:
        route = self._route(request)
        key, _, partition = await self._key(request, route)
        stale = request.query.get("stale", "").lower() in ("1", "true", "yes")
        return await self._ask(request, route, KeyQuery(route.name, key, partition, stale))

    async def get_windows(self, request: web.Request) -> web.Response:
        route = self._route(request)
        key, data, partition = await self._key(request, route)
        try:
            bounds = [int(request.query[b]) if b in request.query else None for b in ("from", "to")]
        except ValueError as exc:
            raise QueryError(400, f"from and to are epoch milliseconds: {exc}") from None
        query = WindowQuery(route.name, key, partition, data, bounds[0], bounds[1], route.windows)
        return await self._ask(request, route, query)

    async def scan(self, request: web.Request) -> web.Response:
        route = self._route(request)
        q = request.query
        try:
            partition = int(request.match_info["partition"])
            limit = int(q.get("limit", "100"))
            if q.get("after") is not None:
                bytes.fromhex(q["after"])
        except ValueError as exc:
            raise QueryError(400, f"bad partition, limit or after: {exc}") from None
        start, end = (self._read_key(request, route, q.get(b)) for b in ("start", "end"))
        query = ScanQuery(route.name, partition, limit, q.get("after"), q.get("prefix"), start, end)
        return await self._ask(request, route, query)

    async def _ask(self, request: web.Request, route: StoreRoute, query: Query) -> web.Response:
        """The loop's answer, or another worker's when the partition is not here."""
        try:
            answer = await asyncio.wait_for(
                asyncio.wrap_future(self.desk.ask(query)), _LOOP_WAIT_S
            )
        except TimeoutError:
            raise QueryError(503, "the worker loop is busy; ask again", RETRY_AFTER_S) from None
        except NotHere as here:
            if FORWARDED in request.headers:  # the group moved it since the asker looked
                raise QueryError(503, f"{here}; it is moving", RETRY_AFTER_S) from None
            stale = isinstance(query, KeyQuery) and query.stale
            return await self._forward(request, route, here.partition, stale)
        answer["served_by"] = {"instance": self.instance, "url": self.url}
        return _json(answer)

    async def _forward(
        self, request: web.Request, route: StoreRoute, partition: int, stale: bool
    ) -> web.Response:
        """Pass the request to the partition's owner; a stale read goes to the workers the
        standby plan puts its standbys on first (sparing the owner's loop, which answers
        queries between its batches), then to the owner. A worker that refuses (503) or does
        not answer makes way for the next; when none answers: 503 with Retry-After."""
        view = await asyncio.to_thread(self.owners.view)
        candidates: list[Member] = []
        if stale and route.backend in STANDBY_BACKENDS:
            candidates += view.standby_holders(partition)
        owner = view.owner(route.topic, partition)
        if view.stable and owner is not None:
            candidates.append(owner)
        candidates = [m for m in candidates if m.url is not None and m.url != self.url]
        if not candidates:
            why = "the group is rebalancing" if not view.stable or owner is None else (
                f"owner {owner.instance} serves no queries yet")
            raise QueryError(
                503, f"partition {partition} of {route.topic!r}: no worker to ask now ({why})",
                RETRY_AFTER_S,
            )  # fmt: skip
        refusals = []
        for member in candidates:
            try:
                got = await self._pass_on(request, member)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.owners.forget()
                refusals.append(f"{member.instance} at {member.url} did not answer "
                                f"({type(exc).__name__}: {exc})")  # fmt: skip
                continue
            if got.status != 503 or member is candidates[-1] and not refusals:
                return got
            refusals.append(f"{member.instance}: {got.text}")
        raise QueryError(
            503, f"partition {partition} of {route.topic!r}: " + "; ".join(refusals),
            RETRY_AFTER_S,
        )  # fmt: skip

    async def _pass_on(self, request: web.Request, member: Member) -> web.Response:
        """``request`` as ``member`` answers it, marked forwarded (no second hop)."""
        headers = {FORWARDED: self.instance}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        assert self._session is not None and member.url is not None
        async with self._session.get(member.url + request.path_qs, headers=headers) as got:
            body = await got.read()
            retry = got.headers.get("Retry-After")
            out = None if retry is None else {"Retry-After": retry}
            return web.Response(body=body, status=got.status, headers=out,
                                content_type="application/json")  # fmt: skip
