"""The query server's TLS settings: refused early and by name when they can't work."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from eokafka.config import Settings
from eokafka.devbroker.tls import make_tls
from eokafka.errors import ConfigError
from eokafka.runtime.query.start import query_url


def test_a_certificate_without_its_key_is_refused_at_start(tmp_path: Path) -> None:
    from eokafka.runtime.query.tls import server_context

    tls = make_tls(tmp_path / "tls")
    with pytest.raises(ConfigError, match="http_tls_cert"):
        server_context(str(tls.ca), None)  # a certificate, no private key
    assert isinstance(server_context(str(tls.keystore), None), ssl.SSLContext)


def test_tls_settings_make_https_urls_and_must_agree() -> None:
    s = Settings("app", http_port=9500, http_tls_cert="/x/cert.pem")
    assert query_url(s, 1) == "https://127.0.0.1:9501"
    with pytest.raises(ConfigError, match="http_tls_key"):
        Settings("app", http_port=9500, http_tls_key="/x/key.pem")
    with pytest.raises(ConfigError, match="advertised_url"):
        Settings("app", http_port=9500, http_tls_cert="/x/c.pem",
                 advertised_url="http://10.0.0.7:9500")  # fmt: skip
