"""The stream route end to end: real gunicorn gevent worker, real sockets."""

from __future__ import annotations

import json
import re
import threading

import httpx
from httpx_sse import connect_sse

from tests.harness import Server
from tests.sse import types_until_heartbeat

TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def test_headers_are_those_of_an_event_stream(server: Server, session_id: str) -> None:
    with server.stream(session_id) as stream:
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert stream.headers["cache-control"] == "no-cache"
        assert stream.headers["x-accel-buffering"] == "no"
        assert "access-control-allow-origin" not in stream.headers
        # The app sends no hop-by-hop header; gunicorn writes its own Connection
        # header exactly once.
        names = [name.lower() for name, *_ in stream.header_list]
        assert names.count("connection") == 1


def test_first_bytes_are_retry_and_connected_exactly(server: Server, session_id: str) -> None:
    with server.stream(session_id) as stream:
        body = stream.read_until(b"\n\n")
    pattern = (
        rb"retry: 3000\n"
        rb'data: \{"type":"connected","sessionId":"' + session_id.encode() + rb'",'
        rb'"timestamp":"' + TIMESTAMP.encode() + rb'"\}\n\n'
    )
    assert re.fullmatch(pattern, body), body


def test_a_broadcast_arrives_as_id_and_compact_json(server: Server, session_id: str) -> None:
    with server.stream(session_id) as stream:
        stream.events(1)
        assert server.publish(session_id, {"percent": 40, "note": "half\nway ü"}) == [1]
        body = stream.read_until(b"\n\n", count=2)
    last = body.split(b"\n\n")[1] + b"\n\n"
    match = re.fullmatch(
        rb'id: (\d+-\d+)\ndata: \{"type":"progress","percent":40,"note":"half\\nway \xc3\xbc",'
        rb'"timestamp":"' + TIMESTAMP.encode() + rb'"\}\n\n',
        last,
    )
    assert match, last


def test_heartbeat_events_fill_silence(serve: object, session_id: str) -> None:
    server = serve({"SSE_SESSIONS_HEARTBEAT_INTERVAL": 0.3})  # type: ignore[operator]
    with server.stream(session_id) as stream:
        connected, first, second = stream.events(3, timeout=30)
    assert connected.json()["type"] == "connected"
    for beat in (first, second):
        assert beat.id == ""
        assert beat.json()["type"] == "heartbeat"
        assert re.fullmatch(TIMESTAMP, beat.json()["timestamp"])


def test_heartbeat_comments_when_configured(serve: object, session_id: str) -> None:
    server = serve(  # type: ignore[operator]
        {"SSE_SESSIONS_HEARTBEAT_INTERVAL": 0.3, "SSE_SESSIONS_HEARTBEAT_FORMAT": "comment"}
    )
    with server.stream(session_id) as stream:
        body = stream.read_until(b": heartbeat\n\n", count=2, timeout=30)
    assert body.endswith(b"\n\n: heartbeat\n\n: heartbeat\n\n")


def test_two_clients_of_a_session_receive_and_another_session_does_not(
    server: Server, session_id: str
) -> None:
    with (
        server.stream(session_id) as first,
        server.stream(session_id) as second,
        server.stream(session_id + "-other") as other,
    ):
        for stream in (first, second, other):
            stream.events(1)
        assert server.publish(session_id, {"step": 1}) == [2]
        for stream in (first, second):
            (event,) = stream.events(1)
            assert event.json()["step"] == 1
        # Up to its next heartbeat (after anything sent before it): nothing.
        assert types_until_heartbeat(other) == []


def test_httpx_sse_client_reads_connected_and_events(server: Server, session_id: str) -> None:
    received: list[dict[str, object]] = []
    with (
        httpx.Client(timeout=10) as client,
        connect_sse(client, "GET", f"{server.url}/api/stream/{session_id}") as source,
    ):
        assert source.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        events = source.iter_sse()
        received.append(json.loads(next(events).data))
        publisher = threading.Thread(
            target=server.publish, args=(session_id, {"word": "hello"}), kwargs={"count": 3}
        )
        publisher.start()
        while len(received) < 4:
            event = next(events)
            if json.loads(event.data)["type"] != "heartbeat":
                assert event.id
                received.append(json.loads(event.data))
        publisher.join()
    assert [event["type"] for event in received] == ["connected"] + ["progress"] * 3
    assert [event.get("n") for event in received[1:]] == [0, 1, 2]


def test_a_client_that_hangs_up_is_cleaned_up_at_once(serve: object, session_id: str) -> None:
    # A heartbeat far away: only the hang-up watcher can notice in time.
    server = serve({"SSE_SESSIONS_HEARTBEAT_INTERVAL": 60})  # type: ignore[operator]
    server.wait_for("connections", 0)
    streams = [server.stream(session_id) for _ in range(3)]
    for stream in streams:
        stream.events(1)
    server.wait_for("connections", 3)
    for stream in streams:
        stream.close()
    # Well before the first heartbeat, 60 s after the connections opened.
    stats = server.wait_for("connections", 0, timeout=30)
    assert stats["sessions"] == 0
    assert server.publish(session_id, {"after": True}) == [0]


def test_streams_last_at_most_an_hour_by_default_and_not_all_alike() -> None:
    from flask_sse_sessions._config import DEFAULTS
    from flask_sse_sessions._stream import _seconds_left

    assert DEFAULTS["SSE_SESSIONS_MAX_STREAM_SECONDS"] == 3600
    lives = {round(_seconds_left(3600, float("inf"))) for _ in range(50)}
    assert all(3240 <= life <= 3600 for life in lives), lives
    assert len(lives) > 10  # jitter: streams opened together do not end together
