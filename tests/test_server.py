"""gunicorn integration end to end: the start-up warnings, each in its situation
and never otherwise, and the drain of a worker that stops (SIGTERM, a SIGHUP
reload, one worker told to stop): its streams end at once with a jittered
``retry:``, and their clients resume elsewhere without a loss."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server
from tests.rawhttp import RawStream
from tests.redisproc import RedisProcess

RETRY_MS = 1000
BASE = {
    "SSE_SESSIONS_REQUIRE_TOKEN": False,
    "SSE_SESSIONS_HEARTBEAT_INTERVAL": 1,
    "SSE_SESSIONS_RETRY_MS": RETRY_MS,
    "SSE_SESSIONS_MAX_CONNECTIONS": 1000,
}
# Long enough that a worker which waited for its streams would be seen waiting.
SLOW_GRACE = 30

WARNINGS = {
    "sync": "gunicorn runs the sync worker",
    "gthread": "gunicorn runs the gthread worker",
    "workers": "workers on the in-process bus",
    "worker_connections": "worker_connections",
}


def started(config: dict[str, Any], **options: Any) -> Server:
    return Server(config, **options).start()


def warnings_in(server: Server) -> dict[str, int]:
    log = server.log(0)
    return {name: log.count(text) for name, text in WARNINGS.items()}


@pytest.mark.parametrize(
    ("options", "config", "expected"),
    [
        ({}, {}, {}),
        ({"extra_args": ("-k", "sync")}, {}, {"sync": 1}),
        ({"extra_args": ("-k", "gthread", "--threads", "4")}, {}, {"gthread": 1}),
        ({"workers": 2}, {}, {"workers": 1}),
        ({"worker_connections": 500}, {}, {"worker_connections": 1}),
        # The per-process stream limit is the only one that matters here.
        ({"worker_connections": 500}, {"SSE_SESSIONS_MAX_CONNECTIONS": 500}, {}),
    ],
    ids=["gevent", "sync", "gthread", "two-workers", "low-worker-connections", "limit-fits"],
)
def test_start_up_warnings(
    options: dict[str, Any], config: dict[str, Any], expected: dict[str, int]
) -> None:
    server = started({**BASE, **config}, **options)
    try:
        # Every worker has loaded the app: ask each until both have answered.
        pids = set()
        deadline = time.monotonic() + 30
        while len(pids) < server.workers and time.monotonic() < deadline:
            pids.add(httpx.get(server.url + "/debug/stats", timeout=10).json()["pid"])
        assert len(pids) == server.workers
    finally:
        server.stop()
    found = warnings_in(server)
    assert found == {name: expected.get(name, 0) for name in WARNINGS}, server.log(0)
    log = server.log(0)
    if expected:
        # Each names its fix.
        fixes = {"sync": "-k gevent", "gthread": "-k gevent", "workers": "SSE_SESSIONS_REDIS_URL"}
        for name in expected:
            assert fixes.get(name, "--worker-connections") in log


def test_two_workers_on_redis_do_not_warn(redis_server: RedisProcess) -> None:
    config = {**BASE, "SSE_SESSIONS_REDIS_URL": redis_server.url}
    server = started(config, workers=2)
    try:
        server.stats()
    finally:
        server.stop()
    assert warnings_in(server) == dict.fromkeys(WARNINGS, 0), server.log(0)


def test_gevent_without_patched_sockets_warns(tmp_path: Path) -> None:
    """An app served by gevent's own server without monkey-patching: each
    stream's wait would block the process. It warns once, at start-up."""
    import subprocess
    import sys

    from tests.conftest import ROOT, free_port

    port = free_port()
    script = tmp_path / "serve.py"
    script.write_text(
        "import json, os\n"
        "from gevent.pywsgi import WSGIServer\n"
        "from tests.server_app import create_app\n"
        f"WSGIServer(('127.0.0.1', {port}), create_app(), log=None).serve_forever()\n"
    )
    log = tmp_path / "serve.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), SSE_TEST_CONFIG=json.dumps(BASE))
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, script], cwd=ROOT, env=env, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        with RawStream(port, "/api/stream/unpatched") as stream:
            stream.events(1)
        assert log.read_text().count("socket is not monkey-patched") == 1
        assert "gevent.monkey.patch_all()" in log.read_text()
    finally:
        process.kill()
        process.wait()


def retry_values(body: bytes) -> list[int]:
    return [int(value) for value in re.findall(rb"^retry: (\d+)$", body, re.M)]


def test_sigterm_ends_every_stream_at_once_with_a_jittered_retry(session_id: str) -> None:
    server = started(BASE, graceful_timeout=SLOW_GRACE)
    streams = [server.stream(session_id) for _ in range(50)]
    try:
        for stream in streams:
            stream.events(1)
        server.publish(session_id, {"n": 1})
        for stream in streams:
            (event,) = stream.events(1)
            assert json.loads(event.data)["n"] == 1
        assert server.process is not None
        sent = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for stream in streams:
            stream.read_to_end(timeout=30)
        took = time.monotonic() - sent
        # Ended by the server (the chunked body's last chunk), not cut, and
        # told when to come back: after the retry time, not all at once.
        assert all(stream.ended for stream in streams)
        delays = [retry_values(stream.body)[-1] for stream in streams]
        assert all(RETRY_MS <= delay <= RETRY_MS + 1000 for delay in delays), delays
        assert len(set(delays)) > 10, delays
        assert took < 3, took
        assert server.process.wait(30) == 0
    finally:
        for stream in streams:
            stream.close()
        server.stop()


class ResumingClient:
    """A client that reconnects like EventSource: after the stream ends (or a
    503), with its Last-Event-ID, until it has ``total`` events."""

    def __init__(self, server: Server, session_id: str, total: int) -> None:
        self.server = server
        self.session_id = session_id
        self.total = total
        self.events: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.drained = 0
        self.refused = 0
        self.opened = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            deadline = time.monotonic() + 120
            while len(self.events) < self.total and time.monotonic() < deadline:
                self._once()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _once(self) -> None:
        headers = {"Last-Event-ID": self.ids[-1]} if self.ids else {}
        try:
            stream = RawStream(self.server.port, f"/api/stream/{self.session_id}", headers)
        except (OSError, TimeoutError):
            time.sleep(0.2)  # the server is between workers
            return
        with stream:
            if stream.status != 200:
                self.refused += 1
                time.sleep(0.2)
                return
            self.opened.set()
            while len(self.events) < self.total:
                try:
                    batch = stream.pending_events(wait=0.2)
                except OSError:
                    return
                for event in batch:
                    value = json.loads(event.data)
                    if event.id:
                        self.ids.append(event.id)
                        self.events.append(value)
                if stream.ended and not batch:
                    if retry_values(stream.body)[1:]:  # the first is the stream's own
                        self.drained += 1
                    return


def worker_pids(server: Server) -> list[int]:
    assert server.process is not None
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def busy_worker(server: Server) -> int:
    """The pid of a worker that serves streams, learned from its own stats."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stats = server.stats()
        if stats["connections"]:
            return int(stats["pid"])
    raise AssertionError("no worker holds a stream")


def publish_numbered(server: Server, session_id: str, total: int, stop: threading.Event) -> None:
    for n in range(total):
        server.publish(session_id, {"k": n})
        if n == total // 3:
            stop.set()  # the test stops a worker now
        time.sleep(0.01)


@pytest.mark.parametrize("how", ["sigterm-one-worker", "sighup-reload"])
def test_clients_of_a_stopping_worker_resume_elsewhere_with_every_event(
    redis_server: RedisProcess, session_id: str, how: str
) -> None:
    config = {**BASE, "SSE_SESSIONS_REDIS_URL": redis_server.url}
    server = started(config, workers=2, graceful_timeout=SLOW_GRACE)
    total = 150
    try:
        clients = [ResumingClient(server, session_id, total) for _ in range(20)]
        for client in clients:
            assert client.opened.wait(30)
        victim = busy_worker(server)
        halfway = threading.Event()
        publisher = threading.Thread(
            target=publish_numbered, args=(server, session_id, total, halfway)
        )
        publisher.start()
        assert halfway.wait(60)
        if how == "sighup-reload":
            assert server.process is not None
            server.process.send_signal(signal.SIGHUP)
        else:
            os.kill(victim, signal.SIGTERM)
        publisher.join(120)
        for client in clients:
            client.thread.join(120)
            assert client.error is None, client.error
            assert [event["k"] for event in client.events] == list(range(total))
            assert len(set(client.ids)) == total
        # The stopped worker's clients were told to come back, and did.
        assert sum(client.drained for client in clients) >= 1
        if how == "sighup-reload":
            assert victim not in worker_pids(server)
    finally:
        server.stop()


def test_max_requests_recycling_drains_the_worker(session_id: str) -> None:
    server = started(BASE, graceful_timeout=SLOW_GRACE, extra_args=("--max-requests", "20"))
    streams = [server.stream(session_id) for _ in range(3)]
    try:
        for stream in streams:
            stream.events(1)
        # Requests count towards max_requests until the worker stops itself.
        deadline = time.monotonic() + 30
        while not all(len(retry_values(stream.body)) > 1 for stream in streams):
            assert time.monotonic() < deadline, [stream.body[-200:] for stream in streams]
            with contextlib.suppress(httpx.TransportError):  # between two workers
                httpx.get(server.url + "/health", timeout=5)
            for stream in streams:
                stream.pending_events(wait=0.05)
        for stream in streams:
            stream.read_to_end(timeout=30)
            assert stream.ended
    finally:
        for stream in streams:
            stream.close()
        server.stop()


def test_stream_requests_to_a_draining_worker_get_503_with_retry_after(
    apps: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_sse_sessions._server import DRAIN

    app = apps(SSE_SESSIONS_REQUIRE_TOKEN=False, SSE_SESSIONS_RETRY_MS=3000)
    client = app.test_client()
    monkeypatch.setattr(DRAIN, "draining", True)
    response = client.get("/api/stream/job")
    assert response.status_code == 503
    assert response.json is not None and response.json["error"] == "draining"
    assert 3 <= int(response.headers["Retry-After"]) <= 6
    assert app.extensions["sse_sessions"].stats()["refused"]["draining"] == 1
    monkeypatch.setattr(DRAIN, "draining", False)
    streaming = client.get("/api/stream/job", buffered=False)
    assert streaming.status_code == 200
    streaming.close()
