"""A minimal Kafka wire-protocol connection: framing, encoding, TLS and SASL login.

Just enough for requests librdkafka does not make for us (a static member leaving its group
for good, see leave.py). It speaks to one broker at a time, blocking, with every socket
operation bounded by a deadline. Security follows the librdkafka settings a worker already
has: ``security.protocol`` PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; SASL mechanisms
PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; TLS from ``ssl.ca.location`` / ``ssl.ca.pem``, an
optional client certificate, and librdkafka's verification switches. Anything else raises
:class:`Unsupported` naming the setting, before any connection is made.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
API_NAMES = {10: "FindCoordinator", 13: "LeaveGroup", SASL_HANDSHAKE: "SaslHandshake",
             SASL_AUTHENTICATE: "SaslAuthenticate", 68: "ConsumerGroupHeartbeat"}  # fmt: skip
_SCRAM = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
_MECHANISMS = ("PLAIN", *_SCRAM)
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# TLS settings of librdkafka this client cannot honour: refusing beats connecting otherwise.
_UNSUPPORTED_TLS = ("ssl.keystore.location", "ssl.certificate.pem", "ssl.key.pem",
                    "ssl.engine.location", "ssl.engine.id")  # fmt: skip


class WireError(Exception):
    """A connection, login or protocol failure talking to a broker."""


class Unsupported(WireError):
    """The client settings need something this client does not implement."""


# -- encoding ------------------------------------------------------------------------------


class Writer:
    """Builds a request body; ``compact`` methods are the flexible-version encodings."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def int8(self, v: int) -> Writer:
        self.parts.append(struct.pack(">b", v))
        return self

    def int16(self, v: int) -> Writer:
        self.parts.append(struct.pack(">h", v))
        return self

    def int32(self, v: int) -> Writer:
        self.parts.append(struct.pack(">i", v))
        return self

    def uvarint(self, v: int) -> Writer:
        out = bytearray()
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
        self.parts.append(bytes(out))
        return self

    def string(self, s: str | None) -> Writer:
        if s is None:
            return self.int16(-1)
        data = s.encode()
        self.int16(len(data))
        self.parts.append(data)
        return self

    def bytes_(self, b: bytes) -> Writer:
        self.int32(len(b))
        self.parts.append(b)
        return self

    def compact_string(self, s: str | None) -> Writer:
        if s is None:
            return self.uvarint(0)
        data = s.encode()
        self.uvarint(len(data) + 1)
        self.parts.append(data)
        return self

    def compact_array_len(self, n: int | None) -> Writer:
        return self.uvarint(0 if n is None else n + 1)

    def tags(self) -> Writer:
        """An empty tagged-field section."""
        return self.uvarint(0)

    def build(self) -> bytes:
        return b"".join(self.parts)


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise WireError("truncated response from the broker")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int8(self) -> int:
        return int(struct.unpack(">b", self._take(1))[0])

    def int16(self) -> int:
        return int(struct.unpack(">h", self._take(2))[0])

    def int32(self) -> int:
        return int(struct.unpack(">i", self._take(4))[0])

    def int64(self) -> int:
        return int(struct.unpack(">q", self._take(8))[0])

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            byte = self._take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def string(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self._take(n).decode()

    def bytes_(self) -> bytes | None:
        n = self.int32()
        return None if n < 0 else self._take(n)

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self._take(n - 1).decode()

    def compact_array_len(self) -> int:
        return self.uvarint() - 1

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self._take(self.uvarint())


# -- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Security:
    """What a connection needs from the librdkafka client settings."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str = ""
    password: str = ""
    tls: ssl.SSLContext | None = None

    @staticmethod
    def from_config(conf: Mapping[str, Any]) -> Security:
        protocol = str(conf.get("security.protocol", "plaintext")).upper()
        if protocol not in _PROTOCOLS:
            raise Unsupported(f"security.protocol={protocol}")
        mechanism = None
        if protocol.startswith("SASL"):
            mechanism = str(conf.get("sasl.mechanism") or conf.get("sasl.mechanisms") or "GSSAPI")
            mechanism = mechanism.upper()
            if mechanism not in _MECHANISMS:
                raise Unsupported(f"sasl.mechanism={mechanism}")
        tls = _tls_context(conf) if protocol.endswith("SSL") else None
        return Security(
            protocol,
            mechanism,
            str(conf.get("sasl.username", "")),
            str(conf.get("sasl.password", "")),
            tls,
        )


def _tls_context(conf: Mapping[str, Any]) -> ssl.SSLContext:
    for key in _UNSUPPORTED_TLS:
        if conf.get(key):
            raise Unsupported(key)
    ca = conf.get("ssl.ca.location")
    ca_pem = conf.get("ssl.ca.pem")
    try:
        if ca and os.path.isdir(str(ca)):
            ctx = ssl.create_default_context(capath=str(ca))
        elif ca and str(ca) != "probe":
            ctx = ssl.create_default_context(cafile=str(ca))
        elif ca_pem:
            ctx = ssl.create_default_context(cadata=str(ca_pem))
        else:
            ctx = ssl.create_default_context()
        cert = conf.get("ssl.certificate.location")
        if cert:
            ctx.load_cert_chain(
                str(cert), conf.get("ssl.key.location") or None, conf.get("ssl.key.password")
            )
    except (OSError, ssl.SSLError) as exc:
        raise WireError(f"TLS settings (ssl.ca.location, ssl.certificate.location): {exc}") from exc
    if str(conf.get("ssl.endpoint.identification.algorithm", "https")).lower() == "none":
        ctx.check_hostname = False
    if str(conf.get("enable.ssl.certificate.verification", "true")).lower() in ("false", "0"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def bootstrap_addresses(servers: str) -> list[tuple[str, int]]:
    """``host:port,...`` (an optional ``proto://`` prefix, IPv6 in brackets) as pairs."""
    out: list[tuple[str, int]] = []
    for item in servers.split(","):
        item = item.strip().split("://", 1)[-1]
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host:
            host, port = port, "9092"
        out.append((host.strip("[]"), int(port)))
    return out


# -- the connection ------------------------------------------------------------------------


class Connection:
    """One authenticated broker connection; requests in order, one at a time."""

    def __init__(
        self, host: str, port: int, security: Security, client_id: str, deadline: float
    ) -> None:
        self.client_id = client_id
        self.address = f"{host}:{port}"
        self.deadline = deadline
        self.correlation = 0
        self.sock: socket.socket | ssl.SSLSocket
        try:
            raw = socket.create_connection((host, port), timeout=self._remaining())
            if security.tls is not None:
                raw.settimeout(self._remaining())
                self.sock = security.tls.wrap_socket(raw, server_hostname=host)
            else:
                self.sock = raw
        except (OSError, ssl.SSLError) as exc:
            raise WireError(f"connecting to {host}:{port} ({security.protocol}): {exc}") from exc
        try:
            if security.mechanism is not None:
                _login(self, security)
        except BaseException:
            self.close()
            raise

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise WireError("timed out")
        return left

    def request(self, api_key: int, version: int, body: bytes, flexible: bool) -> Reader:
        """Send one request (header v2 when ``flexible``, else v1); return its response body."""
        self.correlation += 1
        header = Writer().int16(api_key).int16(version).int32(self.correlation)
        header.string(self.client_id)
        if flexible:
            header.tags()
        payload = header.build() + body
        try:
            self.sock.settimeout(self._remaining())
            self.sock.sendall(struct.pack(">i", len(payload)) + payload)
            (size,) = struct.unpack(">i", self._read(4))
            reader = Reader(self._read(size))
        except (OSError, ssl.SSLError) as exc:
            name = API_NAMES.get(api_key, f"request {api_key}")
            raise WireError(f"{name} v{version} to {self.address}: {exc}") from exc
        if reader.int32() != self.correlation:
            raise WireError("the broker answered another request than the one sent")
        if flexible:
            reader.skip_tags()
        return reader

    def _read(self, n: int) -> bytes:
        chunks: list[bytes] = []
        while n:
            self.sock.settimeout(self._remaining())
            chunk = self.sock.recv(min(n, 1 << 16))
            if not chunk:
                raise WireError("the broker closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _login(conn: Connection, security: Security) -> None:
    mechanism = security.mechanism
    assert mechanism is not None
    r = conn.request(SASL_HANDSHAKE, 1, Writer().string(mechanism).build(), flexible=False)
    code = r.int16()
    if code != 0:
        offered = [r.string() for _ in range(r.int32())]
        raise WireError(f"the broker refused sasl.mechanism={mechanism} (it offers {offered})")
    if mechanism == "PLAIN":
        _authenticate(conn, f"\0{security.username}\0{security.password}".encode())
        return
    _scram(conn, security, _SCRAM[mechanism])


def _authenticate(conn: Connection, data: bytes) -> bytes:
    r = conn.request(SASL_AUTHENTICATE, 1, Writer().bytes_(data).build(), flexible=False)
    code, message = r.int16(), r.string()
    if code != 0:
        raise WireError(f"SASL login refused (error {code}): {message}")
    return r.bytes_() or b""


def _scram(conn: Connection, security: Security, digest: str) -> None:
    """RFC 5802 SCRAM, as Kafka speaks it (no channel binding)."""
    scram = Scram(security.username, security.password, digest)
    server_first = _authenticate(conn, scram.first().encode()).decode()
    server_final = _authenticate(conn, scram.final(server_first).encode()).decode()
    scram.verify(server_final)


class Scram:
    """The client side of one SCRAM exchange: first message, final message, verification."""

    def __init__(self, username: str, password: str, digest: str, nonce: str = "") -> None:
        self.user = username.replace("=", "=3D").replace(",", "=2C")
        self.password = password
        self.digest = digest
        self.nonce = nonce or base64.b64encode(os.urandom(24)).decode()
        self.first_bare = f"n={self.user},r={self.nonce}"
        self.server_signature = ""

    def first(self) -> str:
        return f"n,,{self.first_bare}"

    def final(self, server_first: str) -> str:
        fields = dict(item.split("=", 1) for item in server_first.split(",") if "=" in item)
        if "e" in fields:
            raise WireError(f"SASL login refused: {fields['e']}")
        full_nonce, salt, rounds = fields["r"], base64.b64decode(fields["s"]), int(fields["i"])
        if not full_nonce.startswith(self.nonce):
            raise WireError("SASL SCRAM: the broker's nonce does not extend ours")
        digest = self.digest
        salted = hashlib.pbkdf2_hmac(digest, self.password.encode(), salt, rounds)
        client_key = hmac.new(salted, b"Client Key", digest).digest()
        stored_key = hashlib.new(digest, client_key).digest()
        final_bare = f"c=biws,r={full_nonce}"
        auth_message = f"{self.first_bare},{server_first},{final_bare}".encode()
        signature = hmac.new(stored_key, auth_message, digest).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.new(salted, b"Server Key", digest).digest()
        self.server_signature = base64.b64encode(
            hmac.new(server_key, auth_message, digest).digest()
        ).decode()
        return f"{final_bare},p={base64.b64encode(proof).decode()}"

    def verify(self, server_final: str) -> None:
        if server_final.startswith("e="):
            raise WireError(f"SASL login refused: {server_final[2:]}")
        if not hmac.compare_digest(server_final.removeprefix("v="), self.server_signature):
            raise WireError("SASL SCRAM: the broker's signature does not verify")
