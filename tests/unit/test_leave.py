"""The group leave of a stopping static member: its wire codec, SCRAM, settings and bounds.

A fake broker on a loopback socket answers FindCoordinator, LeaveGroup and
ConsumerGroupHeartbeat as scripted, so redirects, retries and refusals are checked without
Kafka; tests/integration/test_leave.py checks the leave against a real broker.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest

from eokafka.config import Settings, resolve
from eokafka.runtime.group import leave
from eokafka.runtime.group.leave import leave_group, release_predecessor
from eokafka.runtime.group.wire import (
    Reader,
    Scram,
    Security,
    Unsupported,
    WireError,
    Writer,
    bootstrap_addresses,
)


def test_the_codec_reads_back_what_it_writes() -> None:
    data = (
        Writer().int8(-3).int16(-2).int32(70_000).uvarint(300).string("grp").string(None)
        .compact_string("é").compact_string(None).bytes_(b"\x00\x01").compact_array_len(2)
        .tags().build()
    )  # fmt: skip
    r = Reader(data)
    assert (r.int8(), r.int16(), r.int32(), r.uvarint()) == (-3, -2, 70_000, 300)
    assert (r.string(), r.string(), r.compact_string(), r.compact_string()) == (
        "grp", None, "é", None
    )  # fmt: skip
    assert (r.bytes_(), r.compact_array_len()) == (b"\x00\x01", 2)
    r.skip_tags()
    with pytest.raises(WireError, match="truncated"):
        r.int8()


def test_scram_matches_the_rfc_7677_example() -> None:
    scram = Scram("user", "pencil", "sha256", nonce="rOprNGfwEbeRWgbNEkqO")
    assert scram.first() == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = (
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    assert scram.final(server_first) == (
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    scram.verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    with pytest.raises(WireError, match="does not verify"):
        scram.verify("v=AAAA")
    with pytest.raises(WireError, match="nonce"):
        Scram("user", "pencil", "sha256", nonce="abc").final("r=xyz,s=AA==,i=1")
    with pytest.raises(WireError, match="invalid-proof"):
        scram.verify("e=invalid-proof")


def test_usernames_are_escaped_for_scram() -> None:
    assert Scram("a=b,c", "p", "sha512", nonce="n").first() == "n,,n=a=3Db=2Cc,r=n"


def test_bootstrap_servers_are_parsed_as_librdkafka_takes_them() -> None:
    assert bootstrap_addresses("h1:9092, SASL_SSL://h2:9093,[::1]:9094,h3") == [
        ("h1", 9092), ("h2", 9093), ("::1", 9094), ("h3", 9092)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("conf", "named"),
    [
        ({"security.protocol": "SASL_SSL"}, "sasl.mechanism=GSSAPI"),  # librdkafka's default
        ({"security.protocol": "sasl_plaintext", "sasl.mechanism": "OAUTHBEARER"}, "OAUTHBEARER"),
        ({"security.protocol": "SSL", "ssl.keystore.location": "/k.p12"}, "ssl.keystore.location"),
    ],
)
def test_what_the_client_cannot_do_is_named(conf: dict[str, str], named: str) -> None:
    with pytest.raises(Unsupported, match=named):
        Security.from_config(conf)


def test_supported_security_settings_are_taken() -> None:
    sec = Security.from_config(
        {"security.protocol": "SASL_SSL", "sasl.mechanisms": "scram-sha-512",
         "sasl.username": "u", "sasl.password": "p",
         "ssl.endpoint.identification.algorithm": "none"}
    )  # fmt: skip
    assert (sec.protocol, sec.mechanism, sec.username) == ("SASL_SSL", "SCRAM-SHA-512", "u")
    assert sec.tls is not None and not sec.tls.check_hostname
    assert Security.from_config({}).tls is None


# -- a scripted broker -------------------------------------------------------------------


class FakeBroker:
    """Answers each request with the next scripted body for its api key; records requests."""

    def __init__(self, script: dict[int, list[bytes]], silent: bool = False) -> None:
        self.script = script
        self.silent = silent  # accept, read, never answer
        self.requests: list[tuple[int, int, bytes]] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            while True:
                head = conn.recv(4, socket.MSG_WAITALL)
                if len(head) < 4:
                    return
                frame = conn.recv(struct.unpack(">i", head)[0], socket.MSG_WAITALL)
                key, version, correlation = struct.unpack(">hhi", frame[:8])
                self.requests.append((key, version, frame))
                if self.silent:
                    self.closed.wait(30)
                    return
                flexible = key in (leave.LEAVE_GROUP, leave.CONSUMER_GROUP_HEARTBEAT)
                body = struct.pack(">i", correlation) + (b"\x00" if flexible else b"")
                body += self.script[key].pop(0)
                conn.sendall(struct.pack(">i", len(body)) + body)

    def keys(self) -> list[int]:
        return [key for key, _, _ in self.requests]

    def close(self) -> None:
        self.closed.set()
        self.server.close()


def coordinator(port: int, code: int = 0) -> bytes:
    return (
        Writer().int32(0).int16(code).string(None).int32(1).string("127.0.0.1").int32(port).build()
    )


def left(code: int = 0, member_code: int = 0) -> bytes:
    w = Writer().int32(0).int16(code).compact_array_len(1)
    return w.compact_string("m-1").compact_string("a").int16(member_code).tags().tags().build()


def heartbeat(code: int = 0) -> bytes:
    return Writer().int32(0).int16(code).compact_string(None).build() + bytes(20)


@pytest.fixture
def brokers() -> Iterator[list[FakeBroker]]:
    made: list[FakeBroker] = []
    yield made
    for broker in made:
        broker.close()


def _settings(port: int, **kw: Any) -> Settings:
    return resolve("orders", {"bootstrap_servers": f"127.0.0.1:{port}", **kw}, env={})


def test_a_classic_static_member_leaves_by_member_and_instance_id(
    brokers: list[FakeBroker], caplog: pytest.LogCaptureFixture
) -> None:
    coord = FakeBroker({leave.LEAVE_GROUP: [left()]})
    boot = FakeBroker({leave.FIND_COORDINATOR: [coordinator(coord.port)]})
    brokers += [coord, boot]
    with caplog.at_level(logging.INFO, "eokafka.worker"):
        assert leave_group(_settings(boot.port), "a", "m-1")
    assert boot.keys() == [leave.FIND_COORDINATOR] and coord.keys() == [leave.LEAVE_GROUP]
    key, version, frame = coord.requests[0]
    assert version == 5 and b"orders" in frame and b"m-1" in frame and b"\x02a" in frame
    assert "static member a left group 'orders'" in caplog.text


def test_a_kip848_member_leaves_with_epoch_minus_one(brokers: list[FakeBroker]) -> None:
    coord = FakeBroker({leave.CONSUMER_GROUP_HEARTBEAT: [heartbeat()]})
    boot = FakeBroker({leave.FIND_COORDINATOR: [coordinator(coord.port)]})
    brokers += [coord, boot]
    settings = _settings(boot.port, config={"group.protocol": "consumer"})
    assert leave_group(settings, "a", "m-1")
    _, _, frame = coord.requests[0]
    assert struct.pack(">i", -1) in frame and b"m-1" in frame


def test_a_moved_coordinator_is_looked_up_again(brokers: list[FakeBroker]) -> None:
    coord = FakeBroker({leave.LEAVE_GROUP: [left(code=16), left()]})  # NOT_COORDINATOR once
    boot = FakeBroker(
        {leave.FIND_COORDINATOR: [coordinator(0, code=15), coordinator(coord.port),
                                  coordinator(coord.port)]}
    )  # fmt: skip
    brokers += [coord, boot]
    assert leave_group(_settings(boot.port), "a", "m-1")
    assert boot.keys() == [leave.FIND_COORDINATOR] * 3
    assert coord.keys() == [leave.LEAVE_GROUP] * 2


def test_a_successor_holding_the_instance_id_is_left_alone(
    brokers: list[FakeBroker], caplog: pytest.LogCaptureFixture
) -> None:
    coord = FakeBroker({leave.LEAVE_GROUP: [left(member_code=82)]})  # FENCED_INSTANCE_ID
    boot = FakeBroker({leave.FIND_COORDINATOR: [coordinator(coord.port)]})
    brokers += [coord, boot]
    with caplog.at_level(logging.INFO, "eokafka.worker"):
        assert not leave_group(_settings(boot.port), "a", "m-1")
    assert "a successor holds the instance id" in caplog.text
    assert coord.keys() == [leave.LEAVE_GROUP]  # asked once, not retried


@pytest.mark.parametrize(
    "kw",
    [{"static_membership": False}, {"leave_group_on_stop": False}, {}],
    ids=["dynamic", "keep-membership", "never-joined"],
)
def test_nothing_is_sent_when_there_is_nothing_to_leave(
    brokers: list[FakeBroker], kw: dict[str, bool]
) -> None:
    boot = FakeBroker({})
    brokers.append(boot)
    member = None if not kw else "m-1"
    assert not leave_group(_settings(boot.port, **kw), "a", member)
    time.sleep(0.05)
    assert boot.requests == []


def test_an_unsupported_mechanism_is_one_warning_and_no_connection(
    brokers: list[FakeBroker], caplog: pytest.LogCaptureFixture
) -> None:
    boot = FakeBroker({})
    brokers.append(boot)
    settings = _settings(boot.port, config={"security.protocol": "SASL_SSL"})
    with caplog.at_level(logging.WARNING, "eokafka.worker"):
        assert not leave_group(settings, "a", "m-1")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "sasl.mechanism=GSSAPI is not supported" in warnings[0].getMessage()
    assert "session timeout" in warnings[0].getMessage()
    assert boot.requests == []


def test_a_broker_that_never_answers_does_not_hold_the_stop(
    brokers: list[FakeBroker], caplog: pytest.LogCaptureFixture
) -> None:
    boot = FakeBroker({}, silent=True)
    brokers.append(boot)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "eokafka.worker"):
        assert not leave_group(_settings(boot.port), "a", "m-1", timeout=0.5)
    assert time.monotonic() - started < 10  # bounded by the timeout, far from librdkafka's
    why = f"(FindCoordinator v1 to 127.0.0.1:{boot.port}: timed out)"
    assert f"of group 'orders' could not leave the group on stop {why}" in caplog.text
    assert boot.keys() == [leave.FIND_COORDINATOR]


def test_no_broker_at_all_falls_back_to_the_session_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])  # closed again: nothing listens there
    with caplog.at_level(logging.WARNING, "eokafka.worker"):
        assert not leave_group(_settings(port), "a", "m-1", timeout=0.5)
    assert "its partitions move to the other members after the session timeout" in caplog.text


def test_the_setting_comes_from_the_environment() -> None:
    assert (
        resolve("orders", {}, env={"EOKAFKA_LEAVE_GROUP_ON_STOP": "0"}).leave_group_on_stop is False
    )
    assert resolve("orders", {}, env={}).leave_group_on_stop is True


class FakeAdmin:
    """describe_consumer_groups answering with the given (member id, instance id) pairs."""

    def __init__(self, members: list[tuple[str, str | None]]) -> None:
        self.members = members
        self.asked = 0

    def describe_consumer_groups(self, groups: list[str], **_: Any) -> dict[str, Any]:
        self.asked += 1
        described = SimpleNamespace(
            members=[SimpleNamespace(member_id=m, group_instance_id=i) for m, i in self.members]
        )
        future: Future[Any] = Future()
        future.set_result(described)
        return {groups[0]: future}


def test_a_kip848_restart_releases_its_crashed_predecessor_with_epoch_minus_two(
    brokers: list[FakeBroker],
) -> None:
    coord = FakeBroker({leave.CONSUMER_GROUP_HEARTBEAT: [heartbeat()]})
    boot = FakeBroker({leave.FIND_COORDINATOR: [coordinator(coord.port)]})
    brokers += [coord, boot]
    settings = _settings(boot.port, config={"group.protocol": "consumer"})
    admin = FakeAdmin([("other", "b"), ("crashed", "a"), ("dyn", None)])
    assert release_predecessor(settings, "a", admin)
    _, _, frame = coord.requests[0]
    assert struct.pack(">i", -2) in frame and b"crashed" in frame and b"other" not in frame


@pytest.mark.parametrize(
    ("config", "members", "asked"),
    [({}, [("crashed", "a")], 0), ({"group.protocol": "consumer"}, [("other", "b")], 1)],
    ids=["classic", "no-predecessor"],
)
def test_nobody_is_released_without_a_kip848_predecessor(
    brokers: list[FakeBroker], config: dict[str, str], members: list[Any], asked: int
) -> None:
    boot = FakeBroker({})
    brokers.append(boot)
    admin = FakeAdmin(members)
    assert not release_predecessor(_settings(boot.port, config=config), "a", admin)
    assert admin.asked == asked and boot.requests == []
