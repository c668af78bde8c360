"""HTTPS for the query server: its certificate, and the CA its clients verify it with.

A server certificate is its own setting (``http_tls_cert``, ``http_tls_key``): the Kafka
client's ``ssl.certificate.location`` identifies the worker to the brokers as a client and
rarely names the worker's host for others to reach. The CA that signed the servers'
certificates is often the organisation's, the one the Kafka client already trusts, so a
client of the query server (another worker forwarding, QueryClient, ``eokafka query``)
verifies with ``http_tls_ca``, else the Kafka client's ``ssl.ca.location``, else the system's
CAs. Verification (chain and host name) is never turned off.
"""

from __future__ import annotations

import ssl

from eokafka.config import Settings
from eokafka.errors import ConfigError


def server_context(cert: str, key: str | None) -> ssl.SSLContext:
    """The server side: ``cert`` (PEM, the chain after the server's own certificate) and its
    private key (``key``, or in the same file)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        where = f"http_tls_cert={cert!r}" + (f", http_tls_key={key!r}" if key else "")
        raise ConfigError(
            f"{where}: the query server's certificate and private key (PEM) could not be "
            f"loaded: {exc}"
        ) from None
    return context


def trusted_ca(settings: Settings) -> str | None:
    """The CA file clients of the query server verify it with (None: the system's)."""
    return settings.http_tls_ca or settings.config.get("ssl.ca.location") or None


def client_context(ca: str | None) -> ssl.SSLContext:
    """A verifying client context: ``ca`` (a PEM file), or the system's CAs."""
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"http_tls_ca={ca!r}: the CA file could not be read: {exc}") from None
