"""Stream sockets end to end: a client that stops reading without closing is
reaped within the stated bound (``SSE_SESSIONS_CLIENT_TIMEOUT`` plus one
heartbeat interval), and with the bounded send buffer a client that stops
reading during a burst is cut once it is about a queue's worth of events
behind, while a hundred readers get every event."""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import time
from typing import Any

from flask_sse_sessions._wire import ServerSentEvent
from tests.conftest import Server
from tests.rawhttp import RawStream, parse_stream

BASE = {"SSE_SESSIONS_REQUIRE_TOKEN": False}


def request(port: int, session_id: str, *, receive_buffer: int | None = None) -> socket.socket:
    """A stream request whose answer the test reads from the socket itself."""
    stream = RawStream(
        port, f"/api/stream/{session_id}", receive_buffer=receive_buffer, read_head=False
    )
    return stream.sock


decode = parse_stream


def test_a_client_that_stops_reading_is_reaped_within_the_bound(
    own_server: Any, session_id: str
) -> None:
    timeout, heartbeat = 2, 0.5
    bound = timeout + heartbeat
    server: Server = own_server(
        {
            **BASE,
            "SSE_SESSIONS_CLIENT_TIMEOUT": timeout,
            "SSE_SESSIONS_HEARTBEAT_INTERVAL": heartbeat,
        }
    )
    # It never reads: once its small buffer and the server's are full, its
    # kernel answers with a shut window, as a frozen phone app's would.
    stalled = request(server.port, session_id, receive_buffer=4096)
    try:
        server.wait_for("connections", 1, timeout=30)
        # Fewer events than the queue holds: nothing but the socket can cut it.
        server.publish(session_id, {"blob": "x" * 8000}, count=40)
        # Its stream is stuck in a write: the heartbeats stop going out.
        full = time.monotonic()
        deadline = full + bound + 30
        while server.stats()["connections"]:
            assert time.monotonic() < deadline, "the stalled client was never reaped"
            time.sleep(0.1)
        reaped_after = time.monotonic() - full
        assert server.stats()["dropped"] == 0  # the kernel cut it, not the queue
        # The stated bound, with room for a loaded machine.
        assert reaped_after < bound + 10, reaped_after
    finally:
        stalled.close()


class Readers:
    """Many clients read in one thread with a selector, as fast as they can."""

    def __init__(self, port: int, session_id: str, count: int) -> None:
        self.selector = selectors.DefaultSelector()
        self.raw: dict[socket.socket, bytearray] = {}
        self.closed: set[socket.socket] = set()
        for _ in range(count):
            sock = request(port, session_id)
            sock.setblocking(False)
            self.raw[sock] = bytearray()
            self.selector.register(sock, selectors.EVENT_READ)

    def read(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for key, _ in self.selector.select(0.05):
                sock: Any = key.fileobj
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    self.raw[sock] += data
                else:
                    self.selector.unregister(sock)
                    self.closed.add(sock)

    def read_until(self, condition: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            self.read(0.2)

    def events(self) -> list[list[ServerSentEvent]]:
        return [decode(bytes(raw))[0] for raw in self.raw.values()]

    def close(self) -> None:
        for sock in self.raw:
            sock.close()


def numbers(events: list[ServerSentEvent]) -> list[int]:
    return [json.loads(event.data)["k"] for event in events if event.id]


def test_a_client_that_stops_reading_during_a_burst_is_cut_while_readers_get_everything(
    own_server: Any, session_id: str
) -> None:
    # The defaults: a queue of 256 events, a send buffer of 64 KiB.
    server: Server = own_server(
        {**BASE, "SSE_SESSIONS_HISTORY_SIZE": 1000, "SSE_SESSIONS_HEARTBEAT_INTERVAL": 5}
    )
    readers = Readers(server.port, session_id, 100)
    stalled = request(server.port, session_id)
    try:
        server.wait_for("connections", 101, timeout=30)
        readers.read_until(lambda: all(b"connected" in raw for raw in readers.raw.values()))
        blob = "y" * 2000
        total, batch = 500, 10
        for start in range(0, total, batch):
            # Batches from separate requests: the streams write in between.
            for k in range(start, start + batch):
                server.publish(session_id, {"k": k, "blob": blob})
            readers.read(0.01)
        readers.read_until(
            lambda: all(raw.count(b'"k":%d,' % (total - 1)) for raw in readers.raw.values())
        )
        for received in readers.events():
            assert numbers(received) == list(range(total))
        assert not readers.closed
        # The stalled client was cut, a queue and two socket buffers behind.
        stats = server.wait_for("connections", 100, timeout=30)
        assert stats["dropped"] == 1
        stalled.settimeout(30)
        raw = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := stalled.recv(1 << 20):
                raw += chunk
        received, ended = decode(raw)
        assert not ended
        assert len(numbers(received)) < total - 256
        assert numbers(received) == list(range(len(numbers(received))))
    finally:
        readers.close()
        stalled.close()
