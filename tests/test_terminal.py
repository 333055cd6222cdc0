"""The end of a session, and the polling fallback, end to end.

After ``broadcast_complete`` every stream of the session ends; a client that
resumes at or past the terminal event gets 204 (EventSource stops); a client
that arrives later still sees the session finished. ``/latest`` answers from
the same store.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.harness import Server, wait_until
from tests.rawhttp import RawStream
from tests.sse import (
    CLOCK,
    CLOCK_TTL,
    HEARTBEAT,
    REPLAY_ALL,
    REPLAY_NONE,
    RESET,
    TTL,
    advance_clock,
    kind,
    types_until_heartbeat,
    without_heartbeats,
)


def types(stream: RawStream) -> list[str]:
    """The types of the events an ended stream sent, heartbeats left out."""
    assert stream.ended, "read the stream to its end first"
    return [kind(event) for event in without_heartbeats(stream.pending_events())]


def complete(server: Server, session_id: str, **data: Any) -> dict[str, Any]:
    """Publish progress then complete; return what ``/latest`` says of the complete."""
    server.publish(session_id, {"percent": 50})
    server.publish(session_id, {"percent": 100, **data}, type="complete")
    latest = httpx.get(f"{server.url}/api/stream/{session_id}/latest", timeout=10).json()
    assert latest["type"] == "complete"
    return dict(latest)


def frame(latest: dict[str, Any]) -> bytes:
    """The bytes a stream writes for the event ``/latest`` described."""
    data = json.dumps(latest["data"], separators=(",", ":"), ensure_ascii=False)
    return f"id: {latest['id']}\ndata: {data}\n\n".encode()


def test_complete_ends_every_stream_of_the_session(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    streams = [server.stream(session_id) for _ in range(3)]
    with server.stream(session_id + "-other") as other:
        for stream in [*streams, other]:
            stream.events(1)
        done = complete(server, session_id)
        for stream in streams:
            body = stream.read_to_end(timeout=30)
            assert body.endswith(frame(done))
            assert types(stream) == ["progress", "complete"]
            stream.close()
        # The other session's stream got nothing of it (up to its next
        # heartbeat, which comes after anything sent before) and goes on.
        assert types_until_heartbeat(other) == []
        assert not other.ended
        assert server.publish(session_id + "-other", {}) == [1]
        assert types_until_heartbeat(other) == ["progress"]


def test_httpx_sse_iteration_ends_after_complete(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    with (
        httpx.Client(timeout=10) as client,
        connect_sse(client, "GET", f"{server.url}/api/stream/{session_id}") as source,
    ):
        events = source.iter_sse()
        assert json.loads(next(events).data)["type"] == "connected"
        done = complete(server, session_id)
        rest = [json.loads(e.data) for e in events]  # ends when the server ends the body
    assert [e["type"] for e in rest if e["type"] != "heartbeat"] == ["progress", "complete"]
    assert rest[-1] == done["data"]


@pytest.mark.parametrize("past", [0, 1, 1000])
def test_resume_at_or_past_the_terminal_event_gets_204(
    serve: Any, session_id: str, past: int
) -> None:
    server = serve(HEARTBEAT)
    done = complete(server, session_id)
    milliseconds, sequence = (int(part) for part in done["id"].split("-"))
    last_id = f"{milliseconds}-{sequence + past}"
    for path, headers in [
        (session_id, {"Last-Event-ID": last_id, "Connection": "close"}),
        (f"{session_id}?lastEventId={last_id}", {"Connection": "close"}),
    ]:
        with server.stream(path, headers) as response:
            assert response.status == 204
            assert response.read_to_end() == b""
            assert "text/event-stream" not in response.headers.get("content-type", "")


def test_resume_before_the_terminal_event_replays_it_and_ends(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    with server.stream(session_id) as witness:
        witness.events(1)
        done = complete(server, session_id)
        progress, _ = witness.events(2)
    with server.stream(session_id, {"Last-Event-ID": progress.id}) as stream:
        assert stream.status == 200
        body = stream.read_to_end()
    assert body.split(b"\n\n", 1)[1] == frame(done)


def test_resume_from_an_unknown_id_of_a_finished_session_resets_and_ends(
    serve: Any, session_id: str
) -> None:
    server = serve(HEARTBEAT)
    done = complete(server, session_id)
    with server.stream(session_id, {"Last-Event-ID": "1-0"}) as stream:
        body = stream.read_to_end()
    assert body.split(b"\n\n", 1)[1] == RESET + frame(done)


@pytest.mark.parametrize(
    "config", [HEARTBEAT, REPLAY_ALL, REPLAY_NONE], ids=["latest", "all", "none"]
)
def test_a_fresh_connect_after_complete_gets_connected_complete_and_the_end(
    serve: Any, session_id: str, config: dict[str, Any]
) -> None:
    server = serve(config)
    done = complete(server, session_id)
    with server.stream(session_id) as stream:
        assert stream.status == 200
        body = stream.read_to_end(timeout=30)
        assert types(stream)[0] == "connected"
    assert body.endswith(frame(done))
    assert body.count(b'"type":"complete"') == 1


def test_connections_of_a_finished_session_are_released(serve: Any, session_id: str) -> None:
    server = serve({**HEARTBEAT, "SSE_SESSIONS_MAX_CONNECTIONS_PER_SESSION": 2})
    streams = [server.stream(session_id) for _ in range(2)]
    for stream in streams:
        stream.events(1)
    with server.stream(session_id) as refused:
        assert refused.status == 429
    complete(server, session_id)
    for stream in streams:
        stream.read_to_end()

    # The streams ended on the server's side, while the clients still hold
    # their sockets open: their slots are free all the same.
    def admitted() -> bool:
        with server.stream(session_id) as again:
            return bool(again.status == 200)

    wait_until(admitted, message="the finished session's slots stay taken")
    for stream in streams:
        stream.close()


# The polling fallback


def test_latest_of_an_unknown_session_is_404_json(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    response = httpx.get(f"{server.url}/api/stream/{session_id}/latest", timeout=10)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "not_found"
    assert isinstance(response.json()["message"], str)


def test_latest_with_an_invalid_session_id_is_400_json(serve: Any) -> None:
    server = serve(HEARTBEAT)
    response = httpx.get(f"{server.url}/api/stream/not%20valid/latest", timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_session_id"


def test_latest_is_the_stream_s_latest_event_as_json(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    with server.stream(session_id) as stream:
        stream.events(1)
        server.publish(session_id, {"percent": 10, "note": "ü"})
        server.publish(session_id, {"percent": 20, "note": "ü"})
        _, event = stream.events(2)
    response = httpx.get(f"{server.url}/api/stream/{session_id}/latest", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    # Access is checked per request: no shared cache may keep it.
    assert response.headers["cache-control"] == "private, no-cache"
    body = response.json()
    assert body == {"id": event.id, "type": "progress", "data": event.json()}
    assert body["data"]["percent"] == 20


def test_latest_answers_304_until_something_new_happens(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    url = f"{server.url}/api/stream/{session_id}/latest"
    server.publish(session_id, {"percent": 1})
    first = httpx.get(url, timeout=10)
    etag = first.headers["etag"]
    assert etag == f'"{first.json()["id"]}"'
    unchanged = httpx.get(url, headers={"If-None-Match": etag}, timeout=10)
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    server.publish(session_id, {"percent": 2})
    changed = httpx.get(url, headers={"If-None-Match": etag}, timeout=10)
    assert changed.status_code == 200
    assert changed.json()["data"]["percent"] == 2
    assert changed.headers["etag"] != etag


def test_latest_after_complete_shows_the_session_finished(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    done = complete(server, session_id, result="ok")
    assert done["data"]["result"] == "ok"
    assert done["data"]["percent"] == 100


def test_latest_of_an_expired_history_is_404(serve: Any, session_id: str) -> None:
    server = serve(CLOCK_TTL, CLOCK)
    url = f"{server.url}/api/stream/{session_id}/latest"
    server.publish(session_id, {"percent": 1})
    advance_clock(server, TTL / 2)
    assert httpx.get(url, timeout=10).status_code == 200
    advance_clock(server, TTL / 2 + 1)
    assert httpx.get(url, timeout=10).status_code == 404
