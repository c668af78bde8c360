"""Ask a running app for its committed state: a small client of the workers' query servers.

Any worker answers any key (it forwards to the key's owner), so the client needs one worker
that is up. ``QueryClient.for_app`` finds them as the workers find each other: in the
consumer group's description, where each worker's client.id carries its query address;
failing that, from the app's own settings (``advertised_url`` or ``http_host:http_port``,
one per process). A 503 (a task restoring or moving) is asked again after its Retry-After,
within ``patience`` seconds. An https server's certificate is verified with ``ca`` (for_app:
``http_tls_ca``, else the Kafka client's ``ssl.ca.location``), else the system's CAs.

    client = QueryClient.for_app(load_app("shop:app"))
    client.get("totals", "customer-7")["value"]
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from eokafka.client_configs import admin_config, client_id_parts
from eokafka.config import Settings
from eokafka.errors import EokafkaError
from eokafka.runtime.query.tls import client_context, trusted_ca

_TIMEOUT_S = 20.0


class QueryFailed(EokafkaError):
    """No worker gave an answer: ``status`` is the last HTTP status (0: none reachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def advertised_urls(settings: Settings, timeout: float = 10.0) -> list[str]:
    """The query addresses the group's members advertise in their client.id, if any."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    group = settings.application_id
    admin = AdminClient(admin_config(settings))
    try:
        described = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
        members = described.result(timeout=timeout * 2).members
    except (KafkaException, TimeoutError):
        return []
    urls = (client_id_parts(m.client_id)[1] for m in members)
    return sorted({u for u in urls if u})


def configured_urls(settings: Settings) -> list[str]:
    """The query addresses the settings give the app's processes (worker i: port + i)."""
    from eokafka.runtime.query.start import query_url

    urls = (query_url(settings, slot) for slot in range(settings.processes))
    return [u for u in urls if u is not None]


class QueryClient:
    def __init__(
        self,
        urls: list[str],
        token: str | None = None,
        patience: float = 30.0,
        ca: str | None = None,
    ) -> None:
        if not urls:
            raise QueryFailed(
                "no query server to ask: give a url, or run the workers with --http-port "
                "(EOKAFKA_HTTP_PORT)"
            )
        self.urls = [u.rstrip("/") for u in urls]
        self.token = token
        self.patience = patience
        self._tls = client_context(ca)

    @classmethod
    def for_app(cls, settings: Settings, patience: float = 30.0) -> QueryClient:
        """The workers of an app, from its group or else its settings; its http_token."""
        urls = advertised_urls(settings) or configured_urls(settings)
        return cls(urls, settings.http_token, patience, trusted_ca(settings))

    # -- what programs ask ---------------------------------------------------------------

    def get(
        self, store: str, key: Any, stale: bool = False, key_format: str | None = None
    ) -> dict[str, Any]:
        """A key's committed value (``found``, ``value``), its partition and the offsets.

        A str key goes as text (a store keyed by JSON, Avro, ... reads text that is JSON as
        JSON: docs/queries.md), any other key (an int, a dict, ...) as JSON text;
        ``key_format`` ("text" or "json") says how the server reads a str key instead.
        ``stale``: a standby may answer, with its ``lag``."""
        text, params = _key_text(key, key_format)
        if stale:
            params["stale"] = "1"
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self._ask(f"/v1/stores/{_quote(store)}/keys/{_quote(text)}{query}")

    def stores(self) -> list[dict[str, Any]]:
        stores: list[dict[str, Any]] = self._ask("/v1/stores")["stores"]
        return stores

    def items(
        self,
        store: str,
        prefix: str | None = None,
        start: Any = None,
        end: Any = None,
        page: int = 100,
        key_format: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every committed key of ``store`` (or of a prefix or range), partition by
        partition, page by page; each item names its partition."""
        info = next((s for s in self.stores() if s["store"] == store), None)
        if info is None:
            raise QueryFailed(f"no store {store!r}", 404)
        for partition in range(info["partitions"]):
            after: str | None = None
            while True:
                params = {"limit": page, "after": after, "prefix": prefix,
                          **_bounds(start, end, key_format)}  # fmt: skip
                query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
                answer = self._ask(
                    f"/v1/stores/{_quote(store)}/partitions/{partition}/keys?{query}"
                )
                for item in answer["items"]:
                    yield {**item, "partition": partition}
                after = answer["next"]
                if after is None:
                    break

    def ready(self) -> dict[str, bool]:
        """Each worker's /readyz: url -> ready."""
        out = {}
        for url in self.urls:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=_TIMEOUT_S,
                                            context=self._tls):  # fmt: skip
                    out[url] = True
            except (urllib.error.URLError, OSError):
                out[url] = False
        return out

    # -- the requests --------------------------------------------------------------------

    def _ask(self, path: str) -> dict[str, Any]:
        """GET ``path`` of the first worker that answers; 503s are asked again after their
        Retry-After until ``patience`` runs out."""
        deadline = time.monotonic() + self.patience
        headers = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        last = "no worker answered"
        status = 0
        while True:
            wait = 1.0
            for url in self.urls:
                request = urllib.request.Request(url + path, headers=headers)
                try:
                    with urllib.request.urlopen(
                        request, timeout=_TIMEOUT_S, context=self._tls
                    ) as got:
                        answer: dict[str, Any] = json.loads(got.read())
                        return answer
                except urllib.error.HTTPError as exc:
                    status, last = exc.code, _error_text(exc)
                    if exc.code != 503:
                        raise QueryFailed(f"{url}{path}: {exc.code} {last}", exc.code) from None
                    wait = float(exc.headers.get("Retry-After") or 1)
                    break  # the worker asked knows best: the key's task restores or moves
                except (urllib.error.URLError, OSError) as exc:
                    last = f"{url}: {getattr(exc, 'reason', exc)}"
            if time.monotonic() + wait > deadline:
                raise QueryFailed(f"{path}: {last} (asked for {self.patience:.0f} s)", status)
            time.sleep(wait)  # Retry-After, as the server asked


def _key_text(key: Any, key_format: str | None = None) -> tuple[str, dict[str, str]]:
    """A key as the server reads it (runtime/query/keys.py), and the parameter it needs."""
    if isinstance(key, str):
        return key, {} if key_format is None else {"key_format": key_format}
    return json.dumps(key), {"key_format": "json"}


def _bounds(start: Any, end: Any, key_format: str | None) -> dict[str, str]:
    """A range's bounds as text, as JSON text (key_format=json) if either is not a str."""
    given = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    if all(isinstance(v, str) for v in given.values()):
        return {**given, **({} if key_format is None else {"key_format": key_format})}
    return {**{k: json.dumps(v) for k, v in given.items()}, "key_format": "json"}


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", exc.reason))
    except (ValueError, AttributeError):
        return str(exc.reason)
