"""The server harness itself: failures show the log, restarts get their port back."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.harness import Server, ServerError, wait_until


def test_a_server_that_never_serves_fails_with_its_log() -> None:
    server = Server(app="tests.server_app:no_such_factory()")
    with pytest.raises(ServerError) as failure:
        server.start(timeout=30)
    assert "no_such_factory" in str(failure.value)
    assert not server.running()


def test_a_ready_path_that_never_answers_200_fails_within_the_deadline() -> None:
    server = Server(ready_path="/no-such-page")
    with pytest.raises(ServerError) as failure:
        server.start(timeout=3)
    assert "did not serve /no-such-page" in str(failure.value)
    assert "Booting worker" in str(failure.value)  # the log's tail
    assert not server.running()


def test_restart_on_the_same_port_after_sigkill() -> None:
    with Server({"SSE_SESSIONS_HEARTBEAT_INTERVAL": 60}) as server:
        port = server.port
        stream = server.stream("harness-1")  # an open connection while it dies
        assert stream.events(1)[0].json()["type"] == "connected"  # type: ignore[index]
        server.kill()
        assert not server.running()
        server.restart()
        assert server.port == port
        assert httpx.get(server.url + "/health", timeout=10).text == "ok"
        stream.close()
        server.stop(signal.SIGINT)
        server.restart()
        assert server.port == port
        assert server.stats()["connections"] == 0


def test_wait_until_returns_the_value_or_fails_with_the_message() -> None:
    values = iter([0, None, 3])
    assert wait_until(lambda: next(values), timeout=5, interval=0) == 3
    with pytest.raises(AssertionError, match="still 0"):
        wait_until(lambda: 0, timeout=0.2, message=lambda: "still 0")
