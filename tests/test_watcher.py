"""The hang-up watcher, end to end: it ends the streams of clients that hang up
or talk, and never consumes a byte that is not its stream's.

On a kept-alive connection the bytes after a stream's request are the next
request, and they belong to the server: the watcher only peeks at them.
"""

from __future__ import annotations

from typing import Any

import pytest

from flask_sse_sessions import new_session_id
from tests.harness import Server
from tests.rawhttp import RawStream

QUIET = {"SSE_SESSIONS_HEARTBEAT_INTERVAL": 60}  # only the watcher notices the client
WORKERS = {
    "gevent": (),
    "gthread": ("-k", "gthread", "--threads", "4", "--keep-alive", "30"),
}


def start(own_server: Any, worker: str) -> Server:
    server: Server = own_server(QUIET, extra_args=WORKERS[worker])
    return server


@pytest.mark.parametrize("worker", WORKERS)
def test_a_request_sent_while_streaming_cuts_the_stream_and_arrives_intact(
    own_server: Any, worker: str
) -> None:
    server = start(own_server, worker)
    with RawStream(server.port, "/health", timeout=30) as conn:
        conn.read_to_end(timeout=30)
        for round in range(5):
            conn.request("GET", f"/api/stream/{new_session_id()}")
            assert conn.status == 200
            conn.read_until(b'"type":"connected"', timeout=30)
            server.wait_for("connections", 1, timeout=30)
            # The client talks while it should listen: the stream ends, and
            # what it sent is the server's next request, whole.
            payload = f"round {round}: ".encode() + b"x" * 3000
            conn.send_request("POST", "/echo", body=payload)
            conn.read_to_end(timeout=30)  # the stream ends: read to its last chunk
            assert conn.response(timeout=30).status == 200
            assert conn.read_to_end(timeout=30) == payload
            server.wait_for("connections", 0, timeout=30)


@pytest.mark.parametrize("worker", WORKERS)
def test_the_next_request_after_a_stream_ended_arrives_intact(own_server: Any, worker: str) -> None:
    server = start(own_server, worker)
    with RawStream(server.port, "/health", timeout=30) as conn:
        conn.read_to_end(timeout=30)
        for round in range(20):
            session_id = new_session_id()
            server.publish(session_id, type="complete")
            conn.request("GET", f"/api/stream/{session_id}")
            assert conn.status == 200
            # The next request goes out as soon as the terminal event is in,
            # maybe before the server wrote the stream's last chunk.
            conn.read_until(b'"type":"complete"', timeout=30)
            payload = f"round {round}: ".encode() + b"y" * 2000
            conn.send_request("POST", "/echo", body=payload)
            before = len(conn.body)
            assert conn.read_to_end(timeout=30)[before:] == b""  # the rest: its last chunk
            assert conn.response(timeout=30).status == 200
            assert conn.read_to_end(timeout=30) == payload
        server.wait_for("connections", 0, timeout=30)


@pytest.mark.parametrize("worker", WORKERS)
def test_a_client_that_hangs_up_frees_its_slot(own_server: Any, worker: str) -> None:
    server = start(own_server, worker)
    for _ in range(3):
        with server.stream(new_session_id()) as stream:
            assert stream.status == 200
            server.wait_for("connections", 1, timeout=30)
        server.wait_for("connections", 0, timeout=30)


def test_a_stream_that_ended_is_no_longer_watched(own_server: Any) -> None:
    server = start(own_server, "gevent")
    session_id = new_session_id()
    server.publish(session_id, type="complete")
    with server.stream(session_id) as stream:
        assert stream.status == 200
        assert b'"type":"complete"' in stream.read_to_end(timeout=30)
        # The connection stays open (keep-alive), its stream is over: the
        # watcher holds no socket.
        server.wait_for("watched_sockets", 0)
