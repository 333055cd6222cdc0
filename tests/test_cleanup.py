"""Nothing is left behind: 10,000 connect/disconnect cycles on new session ids."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask_sse_sessions import new_session_id

CYCLES = 10_000
WARM_UP = 1_000


def cycle(port: int, publish_every: int, index: int) -> None:
    """One client: connect, read the connected event, hang up."""
    session_id = new_session_id()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /api/stream/{session_id} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = b""
        while b'"type":"connected"' not in received:
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
        if index % publish_every == 0:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as other:
                other.sendall(
                    f"POST /publish/{session_id} HTTP/1.1\r\nHost: x\r\n"
                    "Content-Type: application/json\r\nContent-Length: 12\r\n"
                    'Connection: close\r\n\r\n{"data": {}}'.encode()
                )
                assert b" 200 " in other.recv(4096)


def run_cycles(port: int, count: int) -> None:
    with ThreadPoolExecutor(16) as pool:
        for result in pool.map(lambda i: cycle(port, 10, i), range(count)):
            assert result is None


def test_ten_thousand_cycles_leave_nothing_behind(own_server: Any) -> None:
    server = own_server(
        {"SSE_SESSIONS_HEARTBEAT_INTERVAL": 60, "SSE_SESSIONS_HISTORY_TTL": 3},
        worker_connections=4000,
    )
    run_cycles(server.port, WARM_UP)
    before = server.wait_for("connections", 0, timeout=10)
    assert before["receivers"] == 1  # the registry's fan-out, and nothing per connection

    run_cycles(server.port, CYCLES)
    after = server.wait_for("connections", 0, timeout=10)
    assert after["sessions"] == 0
    assert after["users"] == 0
    assert after["watched_sockets"] == 0
    assert after["receivers"] == 1
    # Histories of the sessions that had events expire after their TTL, at the
    # next publish: only that publish's session is left.
    time.sleep(3.5)
    server.publish(new_session_id(), {})
    assert server.stats()["stored_sessions"] == 1
    growth = after["rss_kib"] - before["rss_kib"]
    print(f"RSS {before['rss_kib']} KiB -> {after['rss_kib']} KiB over {CYCLES} cycles")
    assert growth <= before["rss_kib"] * 0.05, (before, after)
