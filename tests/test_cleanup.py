"""Nothing is left behind by connect/disconnect cycles on new session ids.

A leak is a cost per cycle once the process has reached its working size, so
the test warms the server up until its RSS stops rising and then measures two
later stretches of many thousand cycles each. Where the process started, and
steps of its allocator, do not decide the outcome: a real leak shows in both
stretches.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from flask_sse_sessions import new_session_id
from tests.harness import wait_until
from tests.rawhttp import RawStream

BLOCK = 2_000
WARM_UP_MIN, WARM_UP_MAX = 10_000, 60_000
STEADY_BLOCKS, STEADY_KIB = 3, 256  # warm when 3 blocks in a row grew less than this
STRETCH = 10_000
MAX_BYTES_PER_CYCLE = 100
CONFIG = {"SSE_SESSIONS_HEARTBEAT_INTERVAL": 60, "SSE_SESSIONS_HISTORY_TTL": 3}


def cycle(url: str, port: int, index: int) -> None:
    """One client: connect, read the connected event, hang up; every tenth
    session also gets an event, so histories come and go too."""
    session_id = new_session_id()
    with RawStream(port, f"/api/stream/{session_id}", timeout=10) as stream:
        assert stream.status == 200
        assert stream.events(1, timeout=10)[0].json()["type"] == "connected"
        if index % 10 == 0:
            response = httpx.post(f"{url}/publish/{session_id}", json={"data": {}}, timeout=10)
            assert response.json() == {"reached": [1]}, response.text


def run_cycles(server: Any, count: int) -> int:
    """Run ``count`` cycles from 16 client threads; the worker's RSS in KiB after."""
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: cycle(server.url, server.port, i), range(count)))
    return int(server.wait_for("connections", 0, timeout=30)["rss_kib"])


def bytes_per_cycle(server: Any, warm_up_max: int = WARM_UP_MAX) -> tuple[float, float]:
    """Warm up until RSS stops rising (or for ``warm_up_max`` cycles), then the
    cost per cycle of two stretches.
    """
    sizes = [run_cycles(server, BLOCK)]
    while len(sizes) * BLOCK < warm_up_max:
        sizes.append(run_cycles(server, BLOCK))
        steady = sizes[-1] - sizes[-1 - STEADY_BLOCKS] < STEADY_KIB if len(sizes) > 3 else False
        if len(sizes) * BLOCK >= WARM_UP_MIN and steady:
            break
    start = sizes[-1]
    middle = run_cycles(server, STRETCH)
    end = run_cycles(server, STRETCH)
    costs = (middle - start) * 1024 / STRETCH, (end - middle) * 1024 / STRETCH
    print(f"RSS {sizes} KiB warming up, then {start} -> {middle} -> {end} KiB;"
          f" per cycle {costs[0]:.0f} and {costs[1]:.0f} bytes")  # fmt: skip
    return costs


def test_connect_disconnect_cycles_leave_nothing_behind(own_server: Any) -> None:
    server = own_server(CONFIG, worker_connections=4000)
    first, second = bytes_per_cycle(server)
    assert min(first, second) <= MAX_BYTES_PER_CYCLE, (first, second)

    after = server.wait_for("connections", 0)
    assert after["sessions"] == 0
    assert after["users"] == 0
    assert after["watched_sockets"] == 0
    assert after["receivers"] == 1  # the registry's fan-out, and nothing per connection
    # Histories expire HISTORY_TTL seconds after their last event; the next
    # publish drops them: at last only the sessions of the newest publishes are left.
    assert server.stats()["stored_sessions"] > 1
    last = new_session_id()

    def only_the_newest_left() -> bool:
        server.publish(last, {})
        return bool(server.stats()["stored_sessions"] == 1)

    wait_until(only_the_newest_left, interval=0.2, message=server.stats)


def test_the_measure_finds_a_leak_of_a_few_hundred_bytes(own_server: Any) -> None:
    """The same measure on a server that keeps 300 bytes per connection fails
    (it never stops rising, so its warm-up is cut short)."""
    server = own_server(CONFIG, {"leak_bytes": 300}, worker_connections=4000)
    first, second = bytes_per_cycle(server, warm_up_max=WARM_UP_MIN)
    assert min(first, second) > MAX_BYTES_PER_CYCLE, (first, second)
