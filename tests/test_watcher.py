"""The hang-up watcher, end to end: it ends the streams of clients that hang up
or talk, and never consumes a byte that is not its stream's.

On a kept-alive connection the bytes after a stream's request are the next
request, and they belong to the server: the watcher only peeks at them.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
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


class TlsServer(Server):
    """The test app served over TLS."""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture
def certificate(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1, trusted by httpx in this test."""
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    return cert, key


@pytest.mark.parametrize("worker", WORKERS)
def test_hang_ups_of_tls_clients_are_noticed(certificate: tuple[str, str], worker: str) -> None:
    cert, key = certificate
    server = TlsServer(QUIET, extra_args=(*WORKERS[worker], "--certfile", cert, "--keyfile", key))
    server.start()
    try:
        context = ssl.create_default_context(cafile=cert)
        for _ in range(3):  # the watcher lives on after each
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as plain:
                sock = context.wrap_socket(plain, server_hostname="127.0.0.1")
                sock.sendall(
                    f"GET /api/stream/{new_session_id()} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                )
                assert sock.recv(100).startswith(b"HTTP/1.1 200 OK")
                server.wait_for("connections", 1, timeout=30)
                sock.close()
            # Heartbeats come each minute: this is the watcher.
            server.wait_for("connections", 0, timeout=30)
    finally:
        server.stop()
