"""What the README promises and no other test held it to: stream lifetime,
signals, the retry line, a custom session id pattern, external stream URLs and
publishing to a finished session."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from flask import Flask

from flask_sse_sessions import (
    SSESessions,
    broadcast_complete,
    broadcast_progress,
    stats,
    stream_url,
)
from flask_sse_sessions.signals import connection_closed, connection_opened
from flask_sse_sessions.testing import iter_events
from tests.harness import Server, wait_until
from tests.sse import kind, next_events


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update({"SECRET_KEY": "readme-promises", "SSE_SESSIONS_REQUIRE_TOKEN": False})
    app.config.update(config)
    app.register_blueprint(SSESessions(), url_prefix="/api")
    return app


# SSE_SESSIONS_MAX_STREAM_SECONDS

MAX_STREAM_SECONDS = 4


def test_streams_end_within_max_stream_seconds_free_their_slot_and_resume(
    own_server: Any, session_id: str
) -> None:
    server: Server = own_server(
        {
            "SSE_SESSIONS_MAX_STREAM_SECONDS": MAX_STREAM_SECONDS,
            "SSE_SESSIONS_HEARTBEAT_INTERVAL": 60,
            "SSE_SESSIONS_MAX_CONNECTIONS_PER_SESSION": 1,
        }
    )
    with server.stream(session_id) as stream:
        opened = time.monotonic()
        assert kind(stream.events(1)[0]) == "connected"
        server.publish(session_id, {"step": 1})
        (first,) = next_events(stream, 1)
        with server.stream(session_id) as refused:
            assert refused.status == 429  # the one slot is taken
        stream.read_to_end(timeout=MAX_STREAM_SECONDS + 30)
        lived = time.monotonic() - opened
        assert not stream.pending_events(), "the server ended the stream with no event"
    # Not before 90% of the limit (the jitter takes at most 10% off); the upper
    # bound is the limit itself, which a loaded machine may overrun by its delay.
    assert lived >= 0.9 * MAX_STREAM_SECONDS, lived
    # The slot is free again, and the client resumes from its last id.
    server.wait_for("connections", 0)
    server.publish(session_id, {"step": 2})
    with server.stream(session_id, {"Last-Event-ID": first.id}) as resumed:
        assert resumed.status == 200
        connected, missed = next_events(resumed, 2)
    assert kind(connected) == "connected"
    assert missed.json()["step"] == 2  # type: ignore[index]


# Signals


def test_connection_signals_carry_the_app_session_and_user() -> None:
    app = make_app()
    opened: list[tuple[Any, dict[str, Any]]] = []
    closed: list[tuple[Any, dict[str, Any]]] = []

    def on_open(sender: Any, **extra: Any) -> None:
        opened.append((sender, extra))

    def on_close(sender: Any, **extra: Any) -> None:
        closed.append((sender, extra))

    with (
        connection_opened.connected_to(on_open, app),
        connection_closed.connected_to(on_close, app),
    ):
        response = app.test_client().get(
            "/api/stream/signal-1", buffered=False, environ_base={"REMOTE_ADDR": "10.1.2.3"}
        )
        events = iter_events(response)
        assert next(events).json()["type"] == "connected"  # type: ignore[index]
        assert opened == [(app, {"session_id": "signal-1", "user_key": "10.1.2.3"})]
        assert closed == []
        response.close()
    assert closed == [(app, {"session_id": "signal-1", "user_key": "10.1.2.3"})]
    with app.app_context():
        assert stats()["connections"] == 0


# SSE_SESSIONS_RETRY_MS


@pytest.mark.parametrize("retry_ms", [1500, 12000])
def test_retry_ms_is_the_retry_line(retry_ms: int) -> None:
    app = make_app(SSE_SESSIONS_RETRY_MS=retry_ms)
    response = app.test_client().get("/api/stream/retry-1", buffered=False)
    (connected,) = [next(iter_events(response))]
    response.close()
    assert connected.retry == retry_ms
    assert connected.json()["type"] == "connected"  # type: ignore[index]


# SSE_SESSIONS_SESSION_ID_PATTERN


def test_a_custom_session_id_pattern_decides_what_ids_are_valid() -> None:
    app = make_app(SSE_SESSIONS_SESSION_ID_PATTERN=r"job-[0-9]{1,6}")
    client = app.test_client()
    with app.app_context():
        broadcast_progress("job-42", percent=5)
    assert client.get("/api/stream/job-42/latest").get_json()["data"]["percent"] == 5
    response = client.get("/api/stream/job-42", buffered=False)
    assert response.status_code == 200
    response.close()
    # Valid under the default pattern, not under this one.
    for invalid in ("abc", "job-1234567", "job-12x", "JOB-1"):
        refused = client.get(f"/api/stream/{invalid}")
        assert refused.status_code == 400, invalid
        assert refused.get_json()["error"] == "invalid_session_id"
    with app.app_context(), pytest.raises(ValueError, match="session id"):
        broadcast_progress("abc", percent=1)


# stream_url(..., _external=True)


def test_stream_url_external_is_absolute_and_its_token_opens_the_stream() -> None:
    app = make_app(SSE_SESSIONS_REQUIRE_TOKEN=True)
    with app.test_request_context(base_url="https://app.example:8443/"):
        relative = stream_url("job-7")
        external = stream_url("job-7", _external=True)
    assert re.fullmatch(r"/api/stream/job-7\?token=[^&]+", relative), relative
    assert external.startswith("https://app.example:8443/api/stream/job-7?token="), external
    token = external.partition("?token=")[2]
    assert token
    client = app.test_client()
    response = client.get(f"/api/stream/job-7?token={token}", buffered=False)
    assert response.status_code == 200
    response.close()
    assert client.get("/api/stream/job-7").status_code == 401
    assert client.get("/api/stream/job-8?token=" + token).status_code == 401


# Publishing to a finished session


def test_publishing_to_a_finished_session_opens_it_again(serve: Any, session_id: str) -> None:
    server: Server = serve({"SSE_SESSIONS_HEARTBEAT_INTERVAL": 1})
    server.publish(session_id, {"percent": 100}, type="complete")
    done = httpx.get(f"{server.url}/api/stream/{session_id}/latest", timeout=10).json()
    with server.stream(session_id, {"Last-Event-ID": done["id"]}) as finished:
        assert finished.status == 204

    server.publish(session_id, {"percent": 5, "again": True})
    # A client that saw the end gets what came after it, and stays.
    with server.stream(session_id, {"Last-Event-ID": done["id"]}) as resumed:
        assert resumed.status == 200
        connected, again = next_events(resumed, 2)
        assert kind(connected) == "connected" and again.json()["again"] is True  # type: ignore[index]
        server.publish(session_id, {"percent": 6})
        (live,) = next_events(resumed, 1)
        assert live.json()["percent"] == 6  # type: ignore[index]
        assert not resumed.ended
    # A fresh client sees the running session, not the end.
    with server.stream(session_id) as fresh:
        connected, latest = next_events(fresh, 2)
        assert kind(latest) == "progress" and latest.json()["percent"] == 6  # type: ignore[index]
        wait_until(lambda: server.stats()["connections"] == 1)
        assert not fresh.ended


def test_broadcast_complete_then_progress_in_process() -> None:
    app = make_app(SSE_SESSIONS_REPLAY_ON_CONNECT="all")
    with app.app_context():
        broadcast_complete("again-1")
        broadcast_progress("again-1", percent=1)
    latest = app.test_client().get("/api/stream/again-1/latest").get_json()
    assert latest["type"] == "progress" and latest["data"]["percent"] == 1
