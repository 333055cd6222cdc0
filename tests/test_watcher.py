"""The hang-up watcher, end to end: it ends the streams of clients that hang up
or talk, and never consumes a byte that is not its stream's.

On a kept-alive connection the bytes after a stream's request are the next
request, and they belong to the server: the watcher only peeks at them.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from flask_sse_sessions import new_session_id
from tests.conftest import Server

QUIET = {"SSE_SESSIONS_HEARTBEAT_INTERVAL": 60}  # only the watcher notices the client
WORKERS = {
    "gevent": (),
    "gthread": ("-k", "gthread", "--threads", "4", "--keep-alive", "30"),
}


class Connection:
    """HTTP/1.1 requests one after another on one kept-alive socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""

    def send(self, method: str, path: str, body: bytes = b"") -> None:
        head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n"
        self.sock.sendall(head.encode() + body)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"the server closed the connection; unread: {self.buffer!r}")
        self.buffer += data

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken

    def _take_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def head(self) -> tuple[int, dict[str, str]]:
        status = int(self._take_line().split(b" ")[1])
        headers = {}
        while line := self._take_line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.lower()] = value.strip()
        return status, headers

    def body(self, headers: dict[str, str], until: bytes | None = None) -> bytes:
        """The body; with ``until``, only the chunks up to the one holding it."""
        if "content-length" in headers:
            return self._take(int(headers["content-length"]))
        assert headers.get("transfer-encoding") == "chunked", headers
        body = b""
        while size := int(self._take_line().split(b";")[0], 16):
            body += self._take(size)
            assert self._take(2) == b"\r\n"
            if until is not None and until in body:
                return body
        assert self._take(2) == b"\r\n"
        return body

    def close(self) -> None:
        self.sock.close()


def start(own_server: Any, worker: str) -> Server:
    server: Server = own_server(QUIET, extra_args=WORKERS[worker])
    return server


@pytest.mark.parametrize("worker", WORKERS)
def test_a_request_sent_while_streaming_cuts_the_stream_and_arrives_intact(
    own_server: Any, worker: str
) -> None:
    server = start(own_server, worker)
    conn = Connection(server.port)
    try:
        for round in range(5):
            session_id = new_session_id()
            conn.send("GET", f"/api/stream/{session_id}")
            status, headers = conn.head()
            assert status == 200
            assert b'"type":"connected"' in conn.body(headers, until=b"connected")
            server.wait_for("connections", 1, timeout=30)
            # The client talks while it should listen: the stream ends, and
            # what it sent is the server's next request, whole.
            payload = f"round {round}: ".encode() + b"x" * 3000
            conn.send("POST", "/echo", payload)
            conn.body(headers)  # the stream ends: read to its last chunk
            status, headers = conn.head()
            assert (status, conn.body(headers)) == (200, payload)
            server.wait_for("connections", 0, timeout=30)
    finally:
        conn.close()


@pytest.mark.parametrize("worker", WORKERS)
def test_the_next_request_after_a_stream_ended_arrives_intact(own_server: Any, worker: str) -> None:
    server = start(own_server, worker)
    conn = Connection(server.port)
    try:
        for round in range(20):
            session_id = new_session_id()
            server.publish(session_id, type="complete")
            conn.send("GET", f"/api/stream/{session_id}")
            status, headers = conn.head()
            assert status == 200
            # The next request goes out as soon as the terminal event is in,
            # maybe before the server wrote the stream's last chunk.
            conn.body(headers, until=b'"type":"complete"')
            payload = f"round {round}: ".encode() + b"y" * 2000
            conn.send("POST", "/echo", payload)
            assert conn.body(headers) == b""  # the rest of the stream: its last chunk
            status, headers = conn.head()
            assert (status, conn.body(headers)) == (200, payload)
        server.wait_for("connections", 0, timeout=30)
    finally:
        conn.close()


@pytest.mark.parametrize("worker", WORKERS)
def test_a_client_that_hangs_up_frees_its_slot(own_server: Any, worker: str) -> None:
    server = start(own_server, worker)
    for _ in range(3):
        conn = Connection(server.port)
        conn.send("GET", f"/api/stream/{new_session_id()}")
        assert conn.head()[0] == 200
        server.wait_for("connections", 1, timeout=30)
        conn.close()
        server.wait_for("connections", 0, timeout=30)


def test_a_stream_that_ended_is_no_longer_watched(own_server: Any) -> None:
    server = start(own_server, "gevent")
    conn = Connection(server.port)
    try:
        session_id = new_session_id()
        server.publish(session_id, type="complete")
        conn.send("GET", f"/api/stream/{session_id}")
        assert conn.head()[0] == 200
        assert b'"type":"complete"' in conn.body({"transfer-encoding": "chunked"})
        # The connection stays open (keep-alive), its stream is over: the
        # watcher holds no socket.
        deadline = time.monotonic() + 30
        while server.stats()["watched_sockets"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.stats()["watched_sockets"] == 0
    finally:
        conn.close()
