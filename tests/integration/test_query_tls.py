"""The query server over HTTPS: workers serve it, forward to each other over it and verify
each other's certificate; QueryClient and ``eokafka query`` verify it too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from eokafka.devbroker.tls import make_tls
from tests.integration.harness import app_topics, wait_for
from tests.integration.test_queries import (
    HTTP_S,
    SETTLE_S,
    STORE,
    TARGET,
    Node,
    _answers,
    _inputs,
    _nodes,
    _stop_all,
)
from tests.kafka_helpers import produce_records, read_committed
from tests.totals_reference import check_running_totals

pytestmark = pytest.mark.integration


def _https(nodes: list[Node], ca: Path) -> None:
    for n in nodes:
        n.url = n.url.replace("http://", "https://")
        n.verify = str(ca)


def test_workers_serve_and_forward_over_verified_https(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from eokafka.config import Settings
    from eokafka.query import QueryClient, QueryFailed

    tls = make_tls(tmp_path / "tls")  # a private CA; the certificate names 127.0.0.1
    names = app_topics(kafka_bootstrap, "query-tls", 2)
    inputs = _inputs(80, seed=11)
    produce_records(kafka_bootstrap, names.src, inputs)
    env = {**names.env, "EOKAFKA_HTTP_TLS_CERT": str(tls.keystore),
           "EOKAFKA_HTTP_TLS_CA": str(tls.ca)}  # fmt: skip
    nodes = _nodes(kafka_bootstrap, tmp_path, env, ["h0", "h1"])
    _https(nodes, tls.ca)
    try:
        for n in nodes:
            n.proc.start()
        outputs = read_committed(kafka_bootstrap, names.out, len(inputs), timeout=SETTLE_S)
        final = check_running_totals(inputs, outputs)

        def ready() -> bool:
            try:
                return all(n.get("/readyz").status_code == 200 for n in nodes)
            except requests.ConnectionError:
                return False

        wait_for(ready, SETTLE_S, "both workers ready over https")
        answers: dict[str, dict[str, object]] = {}

        def forwarded() -> bool:
            """Every key answered, some by the other worker (503s while the group settles;
            the first worker may hold every partition until the second has joined)."""
            got = _answers(nodes[0], sorted(final))
            answers.clear()
            answers.update(got or {})
            return any(a["served_by"]["instance"] != nodes[0].name for a in answers.values())  # type: ignore[index]

        wait_for(forwarded, SETTLE_S, "every key answered over https, some forwarded")
        for key, answer in answers.items():
            assert answer["value"] == final[key], answer
            served = answer["served_by"]
            assert isinstance(served, dict)
            assert served["url"].startswith("https://127.0.0.1:"), served

        with pytest.raises(requests.exceptions.SSLError):  # not trusted without the CA
            requests.get(nodes[0].url + "/healthz", timeout=HTTP_S)
        with pytest.raises(requests.ConnectionError):  # no plain http on the port
            requests.get(nodes[0].url.replace("https", "http") + "/healthz", timeout=HTTP_S)

        settings = Settings(names.app_id, bootstrap_servers=kafka_bootstrap,
                            http_tls_ca=str(tls.ca))  # fmt: skip
        client = QueryClient.for_app(settings)
        assert sorted(client.urls) == sorted(n.url for n in nodes)
        assert client.get(STORE, "k3")["value"] == final["k3"]
        untrusting = QueryClient(client.urls, patience=1)  # the system's CAs only
        with pytest.raises(QueryFailed, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.get(STORE, "k3")

        cli_env = {**os.environ, **names.env}
        cli_env.pop("EOKAFKA_TEST_BOOTSTRAP", None)
        cmd = [sys.executable, "-m", "eokafka", "query", TARGET, STORE, "k5",
               "--bootstrap-servers", kafka_bootstrap, "--http-tls-ca", str(tls.ca)]  # fmt: skip
        one = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=120,
                             check=False)  # fmt: skip
        assert one.returncode == 0, one.stderr
        assert json.loads(one.stdout)["value"] == final["k5"]
    finally:
        _stop_all(nodes)

