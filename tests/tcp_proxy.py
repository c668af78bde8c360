"""A loopback TCP proxy in front of a Kafka broker that can make one commit's outcome unknown.

The broker advertises the proxy's address, so every client connection goes through it.
Traffic passes unchanged, frame by frame. Kafka frames are an int32 size followed by the
payload; a request payload starts with api_key int16, api_version int16, correlation_id
int32, and a response payload with the correlation_id int32. When armed, the proxy forwards
the next EndTxn(commit) request (api key 26) to the broker, so the broker commits, but holds
its response for a while and then cuts the connection: the client sees a timeout and then a
broken connection, never the answer. It can also run an action (a SIGSTOP or SIGKILL of the
broker) right after forwarding the next EndTxn(commit), so that a fault lands mid-commit.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

END_TXN = 26
_HOST = "127.0.0.1"


@dataclass
class HeldCommit:
    """One EndTxn(commit) request forwarded to the broker whose response was never delivered."""

    api_version: int
    correlation_id: int
    producer: bytes  # producer id and epoch: the client's retries of this commit are held too
    until: float  # monotonic time until which its answer is withheld
    forwarded: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)  # the broker committed
    cut: threading.Event = field(default_factory=threading.Event)


def _read_frame(sock: socket.socket) -> bytes | None:
    """One whole Kafka frame (size prefix included), or None at end of stream."""
    head = _read_exactly(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">i", head)
    body = _read_exactly(sock, size)
    return None if body is None else head + body


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks: list[bytes] = []
    while n:
        try:
            chunk = sock.recv(min(n, 1 << 16))
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _is_commit(frame: bytes, api_version: int) -> bool:
    """EndTxn's body ends with the ``committed`` boolean, then (v3+) an empty tag buffer."""
    return frame[-2 if api_version >= 3 else -1] == 1


def _producer(frame: bytes, api_version: int) -> bytes:
    """The producer id (int64) and epoch (int16) just before EndTxn's ``committed``."""
    end = -2 if api_version >= 3 else -1
    return frame[end - 10 : end]


class _Connection:
    def __init__(self, proxy: KafkaProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = socket.create_connection((_HOST, proxy.upstream_port))
        self.held: dict[int, HeldCommit] = {}
        self.lock = threading.Lock()
        for target in (self._requests, self._responses):
            threading.Thread(target=target, daemon=True).start()

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _requests(self) -> None:
        while True:
            frame = _read_frame(self.client)
            if frame is None:
                break
            api_key, api_version, correlation_id = struct.unpack(">hhi", frame[4:12])
            hold = trigger = None
            if api_key == END_TXN and _is_commit(frame, api_version):
                trigger = self.proxy._take_trigger()
                hold = self.proxy._take_arm(
                    api_version, correlation_id, _producer(frame, api_version)
                )
                if hold is not None:
                    with self.lock:
                        self.held[correlation_id] = hold
            try:
                self.upstream.sendall(frame)
            except OSError:
                break
            if trigger is not None:
                trigger()
            if hold is not None:
                hold.forwarded.set()
        self.close()

    def _responses(self) -> None:
        while True:
            frame = _read_frame(self.upstream)
            if frame is None:
                break
            (correlation_id,) = struct.unpack(">i", frame[4:8])
            with self.lock:
                hold = self.held.pop(correlation_id, None)
            if hold is not None:
                # The broker has answered (it committed); the client never hears of it.
                hold.answered.set()
                self.proxy._stopping.wait(max(0.0, hold.until - time.monotonic()))
                hold.cut.set()
                break
            try:
                self.client.sendall(frame)
            except OSError:
                break
        self.close()


class KafkaProxy:
    """Listens on a free loopback port and forwards to the broker at ``upstream_port``."""

    def __init__(self, upstream_port: int, hold_s: float = 5.0) -> None:
        self.upstream_port = upstream_port
        self.hold_s = hold_s
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind((_HOST, 0))
        self.server.listen(64)
        self.port: int = self.server.getsockname()[1]
        self.address = f"{_HOST}:{self.port}"
        self.held: list[HeldCommit] = []
        self._armed: int | None = None  # EndTxn(commit) requests to let through first
        self._trigger: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: list[_Connection] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, skip: int = 0) -> None:
        """Hold the response of the EndTxn(commit) request after the next ``skip`` ones."""
        with self._lock:
            self._armed = skip

    def disarm(self) -> None:
        with self._lock:
            self._armed = None
            self._trigger = None

    def on_next_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once, right after the next EndTxn(commit) request was forwarded:
        a fault timed to land while the broker works on a commit."""
        with self._lock:
            self._trigger = action

    def _take_trigger(self) -> Callable[[], None] | None:
        with self._lock:
            action, self._trigger = self._trigger, None
            return action

    def _take_arm(
        self, api_version: int, correlation_id: int, producer: bytes
    ) -> HeldCommit | None:
        with self._lock:
            last = self.held[-1] if self.held else None
            if last is not None and last.producer == producer and time.monotonic() < last.until:
                # librdkafka resends a commit on a new connection after a request timeout:
                # that answer is withheld as well, until the same moment.
                retry = HeldCommit(api_version, correlation_id, producer, last.until)
                self.held.append(retry)
                return retry
            if self._armed is None:
                return None
            if self._armed > 0:
                self._armed -= 1
                return None
            self._armed = None
            held = HeldCommit(api_version, correlation_id, producer, time.monotonic() + self.hold_s)
            self.held.append(held)
            return held

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                self._connections.append(_Connection(self, client))
            except OSError:
                client.close()  # the broker is down: the client sees a refused connection

    def close(self) -> None:
        self._stopping.set()
        self.server.close()
        for conn in self._connections:
            conn.close()
