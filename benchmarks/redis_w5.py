"""W5: the Redis backend. Ours against ours: the in-process bus is the reference.

``latency``
    The same steady load (random sessions, two listeners each) on one worker
    three ways: ``inproc``, the in-process bus with the load inside the worker
    (the reference); ``redis_worker``, the Redis backend with the load inside
    the worker; ``redis_publisher``, the Redis backend with the load from a
    :class:`~flask_sse_sessions.Publisher` in a process of its own. Latency is
    from just before the publish call (``s0``) to receipt.
``ingest``
    One worker with one stream on each of many sessions. While the worker is
    stopped (SIGSTOP), a process pipelines the messages the publish script
    sends straight into ``PUBLISH``; then the worker continues and reads them
    as fast as it can. Events per second from its SIGCONT to the last receipt,
    and per CPU second of the worker (the figure noise on a shared machine
    moves least).
``connections``
    Two workers, many streams over half as many sessions, one event through a
    Publisher to each session; Redis's ``CLIENT LIST`` while they are open.

Redis runs without persistence here (``appendfsync always`` would put a disk
write before each delivery) and without a pub/sub output buffer limit (the
ingest test lets Redis queue what the worker has not read yet).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from .loadclient import LoadClient, percentile
from .servers import ROOT, Server

W5_MODES = ("inproc", "redis_worker", "redis_publisher")


def redis_server() -> Any:
    from tests.redisproc import RedisProcess

    return RedisProcess(
        appendonly=False, options=("--client-output-buffer-limit", "pubsub 0 0 0")
    ).start()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _publisher(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.redis_publisher", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    out, _ = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"the publisher failed ({process.returncode}): {out[-2000:]}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def _paths(prefix: str, sessions: int, count: int) -> list[str]:
    return [f"/api/stream/{prefix}{i % sessions}" for i in range(count)]


def latency(
    mode: str, redis_url: str, *, connections: int, sessions: int, rate: int, seconds: float
) -> dict[str, Any]:
    config = {} if mode == "inproc" else {"SSE_SESSIONS_REDIS_URL": redis_url}
    prefix = f"w5{mode}{int(time.time() * 1000)}-"
    with Server("ours", config) as server:
        from .run import PAYLOAD, warm_up

        warm_up(server)
        client = LoadClient(server.port)
        try:
            client.open(_paths(prefix, sessions, connections))
            connected = client.connected
            client.pump_for(0.5)
            client.reset_tally()
            expected = int(rate * seconds) * (connected // sessions)
            if mode == "redis_publisher":
                publisher = _publisher(
                    "steady", redis_url, prefix, str(sessions),
                    "--rate", str(rate), "--seconds", str(seconds),
                )  # fmt: skip
                client.pump(lambda: publisher.poll() is not None, seconds + 60)
                _finish(publisher)
            else:
                names = [f"{prefix}{i}" for i in range(sessions)]
                body = {"sessions": names, "rate": rate, "seconds": seconds, "seed": 5}
                client.call("POST", "/load", {**body, "data": PAYLOAD})
            client.pump(lambda: client.tally.deliveries >= expected, seconds + 15)
            tally = client.tally
        finally:
            client.close()
    return {
        "mode": mode,
        "connections": connected,
        "sessions": sessions,
        "rate": rate,
        "seconds": seconds,
        "expected": expected,
        "deliveries": tally.deliveries,
        "p50_ms": _ms(percentile(tally.latencies, 50)),
        "p90_ms": _ms(percentile(tally.latencies, 90)),
        "p99_ms": _ms(percentile(tally.latencies, 99)),
    }


def ingest(redis_url: str, *, sessions: int, events: int) -> dict[str, Any]:
    prefix = f"w5ingest{int(time.time() * 1000)}-"
    with Server("ours", {"SSE_SESSIONS_REDIS_URL": redis_url}) as server:
        from .run import warm_up

        warm_up(server)
        client = LoadClient(server.port)
        try:
            client.open(_paths(prefix, sessions, sessions))
            connected = client.connected
            client.pump_for(0.5)
            client.reset_tally()
            # The worker is stopped while the events are published, so that it
            # then reads them as fast as it can, whatever the publisher's speed:
            # they wait in its socket and in Redis's (unlimited) output buffer.
            os.kill(server.pid, signal.SIGSTOP)
            try:
                publisher = _publisher(
                    "raw", redis_url, prefix, str(sessions), "--events", str(events)
                )
                published = _finish(publisher)
            finally:
                cpu_start = server.cpu_seconds()
                resumed = time.time()
                os.kill(server.pid, signal.SIGCONT)
            client.pump(lambda: client.tally.deliveries >= events, 120)
            cpu = server.cpu_seconds() - cpu_start
            tally = client.tally
            stats = server.stats()
        finally:
            client.close()
    seconds = tally.last_recv - resumed
    return {
        "connections": connected,
        "events": events,
        "published_seconds": published["seconds"],
        "deliveries": tally.deliveries,
        "seconds": round(seconds, 4),
        "events_per_second": round(tally.deliveries / seconds, 1) if seconds > 0 else 0.0,
        "worker_cpu_seconds": round(cpu, 3),
        "events_per_cpu_second": round(tally.deliveries / cpu, 1) if cpu > 0 else 0.0,
        "redis_reconnects": stats.get("redis_reconnects"),
        "redis_errors": stats.get("redis_errors"),
    }


def connections(redis_process: Any, *, clients: int, workers: int = 2) -> dict[str, Any]:
    sessions = max(1, clients // 2)
    prefix = f"w5conn{int(time.time() * 1000)}-"
    inspect = redis_process.client(client_name="sse-bench-inspect")
    with Server("ours", {"SSE_SESSIONS_REDIS_URL": redis_process.url}, workers=workers) as server:
        client = LoadClient(server.port)
        try:
            seconds = client.open(_paths(prefix, sessions, clients))
            connected = client.connected
            refused = {str(status): count for status, count in client.refused.items()}
            client.pump_for(0.5)
            client.reset_tally()
            publisher = _publisher("each", redis_process.url, prefix, str(sessions))
            client.pump(lambda: client.tally.deliveries >= connected, 120)
            _finish(publisher)
            listed = inspect.client_list()
            deliveries = client.tally.deliveries
        finally:
            client.close()
    # The workers' connections: all but the publisher's and this harness's own.
    ours = [c for c in listed if c["name"] not in ("sse-bench-publisher", "sse-bench-inspect")]
    listeners = sum(1 for c in ours if int(c["sub"]) > 0)
    return {
        "workers": workers,
        "clients": connected,
        "refused": refused,  # streams that did not connect, by HTTP status (0: none)
        "connect_seconds": round(seconds, 3),
        "sessions": sessions,
        "deliveries": deliveries,
        "redis_clients": len(listed),
        "redis_clients_of_workers": len(ours),
        "redis_clients_of_publishers": sum(c["name"] == "sse-bench-publisher" for c in listed),
        "listeners": listeners,
    }
