"""Fixtures: real gunicorn gevent servers in subprocesses (tests/harness.py), and
clients for them."""

from __future__ import annotations

import json
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.appstream import apps  # noqa: F401 (fixture)
from tests.harness import ROOT, Server, free_port, wait_until
from tests.rawhttp import RawStream
from tests.redisproc import redis_factory, redis_server  # noqa: F401 (fixtures)

__all__ = ["ROOT", "RawStream", "Server", "free_port", "wait_until"]

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_TIMEOUT_MS = 15_000  # what a browser test waits for a page to change
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
    test files (Playwright's sync API can run only once per thread)."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"the browser tests need Debian's Chromium at {CHROMIUM}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page of the browser in a fresh context; the test fails on any uncaught
    page error."""
    context = browser.new_context()
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == []


@pytest.fixture
def session_id(request: pytest.FixtureRequest) -> str:
    """A session id unique to the test."""
    from flask_sse_sessions import new_session_id

    return new_session_id()
