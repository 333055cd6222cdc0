"""Fixtures: real gunicorn gevent servers in subprocesses, and clients for them."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.appstream import apps  # noqa: F401 (fixture)
from tests.rawhttp import RawStream
from tests.redisproc import redis_factory, redis_server  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_configure(config: pytest.Config) -> None:
    """Load tests hold thousands of sockets: raise the open-file limit as far as
    allowed (servers started by the tests inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 20000 if hard == resource.RLIM_INFINITY else min(20000, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``gunicorn -k gevent`` serving ``tests/server_app.py`` on a free port."""

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        hooks: dict[str, Any] | None = None,
        *,
        workers: int = 1,
        worker_connections: int = 2000,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.config = config or {}
        self.hooks = hooks or {}
        self.workers = workers
        self.worker_connections = worker_connections
        self.extra_args = extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(f"/tmp/sse-test-gunicorn-{self.port}.log")

    def start(self) -> Server:
        env = dict(
            os.environ,
            SSE_TEST_CONFIG=json.dumps(self.config),
            SSE_TEST_HOOKS=json.dumps(self.hooks),
            PYTHONPATH=str(ROOT),
        )
        command = [
            sys.executable, "-m", "gunicorn",
            "-k", "gevent",
            "-w", str(self.workers),
            "--worker-connections", str(self.worker_connections),
            "-b", f"127.0.0.1:{self.port}",
            "--graceful-timeout", "2",
            *self.extra_args,
            "tests.server_app:create_app()",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"gunicorn did not answer: {self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def stream(self, path: str, headers: dict[str, str] | None = None) -> RawStream:
        """Open ``/api/stream/<path>`` with the raw socket client."""
        return RawStream(self.port, "/api/stream/" + path, headers)

    def publish(self, session_id: str, data: Any = None, **body: Any) -> list[int]:
        """Publish from a request to the server (so from inside the worker)."""
        response = httpx.post(
            f"{self.url}/publish/{session_id}", json={"data": data, **body}, timeout=30
        )
        response.raise_for_status()
        return list(response.json()["reached"])

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(self.url + "/debug/stats", timeout=10).json())

    def wait_for(self, key: str, value: int, timeout: float = 5.0) -> dict[str, int]:
        """Poll the worker's stats until ``stats[key] == value``; fail otherwise."""
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while stats[key] != value and time.monotonic() < deadline:
            time.sleep(0.05)
            stats = self.stats()
        assert stats[key] == value, stats
        return stats


@pytest.fixture(scope="session")
def serve() -> Iterator[Any]:
    """``serve(config, hooks)``: a running server with that config, shared by the
    tests that ask for the same one and stopped at the end of the session."""
    servers: dict[str, Server] = {}

    def get(config: dict[str, Any] | None = None, hooks: dict[str, Any] | None = None) -> Server:
        key = json.dumps([config, hooks], sort_keys=True)
        if key not in servers:
            servers[key] = Server(config, hooks).start()
        return servers[key]

    yield get
    for server in servers.values():
        server.stop()


@pytest.fixture
def server(serve: Any) -> Server:
    """A server with the default config and a 1-second heartbeat."""
    return serve({"SSE_SESSIONS_HEARTBEAT_INTERVAL": 1})


@pytest.fixture
def own_server() -> Iterator[Any]:
    """``own_server(config, hooks, **options)``: a server this test alone uses,
    free to stop and restart; stopped at the end of the test."""
    servers: list[Server] = []

    def make(
        config: dict[str, Any] | None = None, hooks: dict[str, Any] | None = None, **options: Any
    ) -> Server:
        servers.append(Server(config, hooks, **options).start())
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium (``/usr/bin/chromium``, never a downloaded build),
    driven by Playwright; one for the whole session, shared by the browser
    tests (Playwright's sync API runs once per thread)."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"the browser tests need Debian's Chromium at {CHROMIUM}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def session_id(request: pytest.FixtureRequest) -> str:
    """A session id unique to the test."""
    from flask_sse_sessions import new_session_id

    return new_session_id()
