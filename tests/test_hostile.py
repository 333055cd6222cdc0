"""Hostile input: each case gets a clear error and nobody else notices.

Publishing with bad input fails at the call, in Python. Over HTTP, every
hostile request is fired at a server holding 50 live clients of one session,
with an event published after each; all 50 must receive every event intact.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from typing import Any

import httpx
import pytest
from flask import Flask

from flask_sse_sessions import (
    SSESessions,
    broadcast,
    broadcast_error,
    broadcast_progress,
    new_session_id,
    stats,
    stream_url,
)
from tests.conftest import Server
from tests.rawhttp import RawStream

MAX_EVENT_BYTES = 4096
HOSTILE_SERVER = {
    "SSE_SESSIONS_HEARTBEAT_INTERVAL": 60,  # nothing but the events we publish
    "SSE_SESSIONS_MAX_EVENT_BYTES": MAX_EVENT_BYTES,
}
INVALID_ID = {
    "error": "invalid_session_id",
    "message": "The session id is not one this server issues.",
}
INVALID_LAST_ID = {
    "error": "invalid_last_event_id",
    "message": "Last-Event-ID is not an id this server sent.",
}
INVALID_TOKEN = {"error": "invalid_token", "message": "The stream token is not valid."}

# Strings that break naive SSE code, inside an event's JSON.
NASTY = "line 1\nline 2\r\nline 3\rnul \x00 ls \u2028 ps \u2029 nel \x85\n\ndata: injected\nid: 999"

BAD_SESSION_IDS = [
    "../../etc/passwd",
    "..",
    "a/b",
    "",
    "a" * 129,
    "a" * 10_240,
    "été",
    "a\x00b",
    "a\nb",
    "a\rb",
    "a\u2028b",
    "a b",
    "a%2Fb",
]


# -- publishing: bad input fails at the call -----------------------------------------


@pytest.fixture
def app() -> Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test", SSE_SESSIONS_MAX_EVENT_BYTES=MAX_EVENT_BYTES)
    SSESessions().init_app(app, url_prefix="/api")
    with app.test_request_context():
        yield app


def nothing_stored() -> bool:
    return stats()["stored_sessions"] == 0


@pytest.mark.parametrize("bad", [*BAD_SESSION_IDS, 12, None])
def test_invalid_session_ids_are_refused_at_the_call(app: Flask, bad: Any) -> None:
    with pytest.raises(ValueError, match=r"invalid session id .* must match"):
        broadcast_progress(bad, {"x": 1})
    with pytest.raises(ValueError, match="invalid session id"):
        stream_url(bad)
    assert nothing_stored()


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "a\x00b", "", "connected", "heartbeat"])
def test_bad_type_names_raise_value_error(app: Flask, bad: str) -> None:
    with pytest.raises(ValueError, match="event type"):
        broadcast(new_session_id(), bad, {"x": 1})
    with pytest.raises(ValueError, match="event type"):
        broadcast_progress(new_session_id(), {"type": bad})
    assert nothing_stored()


@pytest.mark.parametrize(
    "data",
    [
        {"when": datetime(2026, 1, 1)},
        {"blob": b"bytes"},
        {"set": {1, 2}},
        {"object": object()},
        {(1, 2): "tuple key"},
    ],
)
def test_data_that_is_not_json_raises_type_error(app: Flask, data: Any) -> None:
    with pytest.raises(TypeError, match="not JSON serialisable"):
        broadcast_progress(new_session_id(), data)
    assert nothing_stored()


@pytest.mark.parametrize("data", [[1, 2], "text", 42, b"{}"])
def test_data_that_is_not_a_dict_raises_type_error(app: Flask, data: Any) -> None:
    with pytest.raises(TypeError, match="must be a dict"):
        broadcast_progress(new_session_id(), data)
    assert nothing_stored()


@pytest.mark.parametrize("message", [None, 42, ["x"], b"bytes"])
def test_error_messages_that_are_not_strings_raise_type_error(app: Flask, message: Any) -> None:
    with pytest.raises(TypeError, match="error message must be a string"):
        broadcast_error(new_session_id(), message)
    assert nothing_stored()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"nan": float("nan")}, "not valid JSON"),
        ({"inf": float("inf")}, "not valid JSON"),
        ({"surrogate": "\ud800"}, "not valid Unicode"),
        ({"big": "x" * MAX_EVENT_BYTES}, "more than SSE_SESSIONS_MAX_EVENT_BYTES"),
        ({"big": "ü" * (MAX_EVENT_BYTES // 2)}, "more than SSE_SESSIONS_MAX_EVENT_BYTES"),
    ],
)
def test_invalid_or_oversized_data_raises_value_error(app: Flask, data: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        broadcast_progress(new_session_id(), data)
    assert nothing_stored()


def test_nasty_strings_are_accepted_and_stored_exactly(app: Flask) -> None:
    session_id = new_session_id()
    assert broadcast_progress(session_id, {"text": NASTY, NASTY: "as a key"}) == 0
    event = app.extensions["sse_sessions"].backend.latest(session_id)
    assert json.loads(event.json)["text"] == NASTY
    assert json.loads(event.json)[NASTY] == "as a key"
    # One id line and one data line: nothing in the data became a field.
    assert event.frame.count(b"\n") == 3
    assert event.frame.startswith(f"id: {event.id}\ndata: {{".encode())


# -- over HTTP, next to 50 live clients ------------------------------------------------


def raw_request(server: Server, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as it is; return the status, headers and whole body."""
    with RawStream(server.port, "", request=request, timeout=10) as answer:
        return answer.status, answer.headers, answer.read_to_end(timeout=10)


def get(path: str, *headers: str) -> bytes:
    """A GET request, byte for byte (``path`` as it goes on the request line)."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"


def json_error(body: dict[str, str]) -> Any:
    def check(status: int, headers: dict[str, str], raw: bytes) -> None:
        assert headers["content-type"] == "application/json"
        assert json.loads(raw) == body

    return check


def gunicorn_error(text: str) -> Any:
    """gunicorn's own plain HTML answer, before the app sees the request."""

    def check(status: int, headers: dict[str, str], raw: bytes) -> None:
        assert headers["content-type"] == "text/html"
        assert text.encode() in raw, raw

    return check


def hostile_requests(session_id: str) -> list[tuple[str, bytes, int, Any]]:
    """(name, raw request, status, body check) for every hostile request."""
    stream = f"/api/stream/{session_id}"
    bad_id, bad_last_id = json_error(INVALID_ID), json_error(INVALID_LAST_ID)
    too_long = gunicorn_error("Request Line is too large")
    bad_line = gunicorn_error("Invalid HTTP request line")
    too_large = gunicorn_error("Request Header Fields Too Large")
    utf8 = "été".encode().decode("latin-1")  # its UTF-8 bytes, sent as they are
    full_width = "\uff11\uff12-3".encode().decode("latin-1")

    def last_id(value: str) -> bytes:
        return get(stream, "Last-Event-ID: " + value)

    return [
        ("path traversal", get("/api/stream/../../etc/passwd"), 400, bad_id),
        ("encoded traversal", get("/api/stream/..%2F..%2Fetc%2Fpasswd"), 400, bad_id),
        ("slash in id", get("/api/stream/a/b"), 400, bad_id),
        ("empty id", get("/api/stream/"), 400, bad_id),
        ("dot-dot id", get("/api/stream/%2e%2e"), 400, bad_id),
        ("10 KB id", get("/api/stream/" + "a" * 10_240), 414, too_long),
        ("4000-byte id", get("/api/stream/" + "a" * 4000), 400, bad_id),
        ("4000-byte id, latest", get(f"/api/stream/{'a' * 4000}/latest"), 400, bad_id),
        ("129-byte id", get("/api/stream/" + "a" * 129), 400, bad_id),
        ("encoded unicode id", get("/api/stream/%C3%A9t%C3%A9"), 400, bad_id),
        ("raw UTF-8 in the request line", get("/api/stream/" + utf8), 400, bad_line),
        ("invalid UTF-8 id", get("/api/stream/%FF%FE"), 400, bad_id),
        ("%00 in id", get("/api/stream/a%00b"), 400, bad_id),
        ("%0A in id", get("/api/stream/a%0Ab"), 400, bad_id),
        ("CRLF and a field in id", get("/api/stream/a%0D%0Aid:%201"), 400, bad_id),
        ("U+2028 in id", get("/api/stream/a%E2%80%A8b"), 400, bad_id),
        ("raw LF in the request line", get("/api/stream/a\nb"), 400, gunicorn_error("bare LF")),
        ("raw CR in the request line", get("/api/stream/a\rb"), 400, bad_line),
        ("8000-byte Last-Event-ID", last_id("1" * 8000), 400, bad_last_id),
        ("9000-byte Last-Event-ID", last_id("1" * 9000), 431, too_large),
        ("malformed Last-Event-ID", last_id("garbage"), 400, bad_last_id),
        ("three-part Last-Event-ID", last_id("1-2-3"), 400, bad_last_id),
        ("20-digit Last-Event-ID", last_id("99999999999999999999-0"), 400, bad_last_id),
        ("negative Last-Event-ID", last_id("-1-0"), 400, bad_last_id),
        ("full-width digits", last_id(full_width), 400, bad_last_id),
        ("NUL in Last-Event-ID", last_id("1\x00-0"), 400, gunicorn_error("Invalid HTTP Header")),
        ("3900-byte lastEventId", get(f"{stream}?lastEventId={'9' * 3900}"), 400, bad_last_id),
        ("100 KB query string", get(f"{stream}?{'q' * 100_000}"), 414, too_long),
        ("3000-byte token", get(f"{stream}?token={'A' * 3000}"), 401, json_error(INVALID_TOKEN)),
        ("101 headers", get(stream, *(f"X-{n}: {n}" for n in range(101))), 431, too_large),
        ("not HTTP", b"\x00\x01\x02\xff garbage\r\n\r\n", 400, bad_line),
    ]


def hostile_publishes() -> list[tuple[str, dict[str, Any]]]:
    """(name, /publish body) that the app must refuse: the test app answers 500."""
    return [
        ("type with LF", {"type": "progress\ndata: x", "data": {"a": 1}}),
        ("type with CR", {"type": "a\rb"}),
        ("type with NUL", {"type": "a\x00b"}),
        ("reserved type", {"type": "connected"}),
        ("oversized event", {"data": {"big": "x" * MAX_EVENT_BYTES}}),
        ("data not a dict", {"data": ["not", "a", "dict"]}),
        ("lone surrogate", {"data": {"s": "\ud800"}}),
    ]


def expect_events(streams: list[RawStream], sent: list[tuple[str, dict[str, Any]]]) -> None:
    """Every stream received exactly the events ``sent`` (id, payload), and nothing else."""
    for stream in streams:
        received = stream.events(len(sent), timeout=10)
        assert [(event.id, event.event) for event in received] == [
            (id, "message") for id, _ in sent
        ]
        for event, (_, payload) in zip(received, sent, strict=True):
            assert {k: v for k, v in event.json().items() if k != "timestamp"} == payload  # type: ignore[union-attr]
        assert stream.pending_events() == []


def test_hostile_input_leaves_50_live_clients_untouched(serve: Any) -> None:
    server = serve(HOSTILE_SERVER)
    session_id = new_session_id()
    sent: list[tuple[str, dict[str, Any]]] = []

    def publish_marker(name: str) -> None:
        payload = {"type": "progress", "after": name, "text": NASTY, NASTY: name}
        response = httpx.post(f"{server.url}/publish/{session_id}", json={"data": payload})
        assert response.json()["reached"] == [50], name
        with server.stream(f"{session_id}/latest") as latest:
            sent.append((latest.json()["id"], payload))  # type: ignore[index]

    with ExitStack() as stack:
        streams = [stack.enter_context(server.stream(session_id)) for _ in range(50)]
        for stream in streams:
            assert stream.status == 200
            (connected,) = stream.events(1)
            assert connected.json()["type"] == "connected"  # type: ignore[index]
        publish_marker("start")

        for name, request, status, check in hostile_requests(session_id):
            got_status, headers, body = raw_request(server, request)
            assert got_status == status, (name, got_status, body[:300])
            check(got_status, headers, body)
            publish_marker(name)

        for name, body in hostile_publishes():
            response = httpx.post(
                f"{server.url}/publish/{session_id}",
                content=json.dumps(body),  # ASCII: "\\ud800" escaped as JSON allows
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 500, name
            publish_marker(name)

        # A long but accepted query string opens a stream like any other.
        padded = server.stream(f"{new_session_id()}?pad={'p' * 3900}")
        assert padded.status == 200
        padded.close()
        publish_marker("padded query")

        expect_events(streams, sent)
        assert len({id for id, _ in sent}) == len(sent)
        server.wait_for("connections", 50)
        assert server.stats()["dropped"] == 0
