"""Ids, replay and resume end to end: no event lost, none twice.

Real gunicorn gevent workers; raw sockets for byte-level checks and httpx-sse
as a real client library.
"""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from httpx_sse import connect_sse

from flask_sse_sessions._wire import ServerSentEvent
from tests.harness import Server, wait_until
from tests.rawhttp import RawStream
from tests.sse import (
    CLOCK,
    CLOCK_TTL,
    HEARTBEAT,
    RESET,
    SMALL_HISTORY,
    TTL,
    advance_clock,
    after_connected,
    frame,
    kind,
    next_events,
    publish_seen,
    until_heartbeat,
)


def key(event_id: str) -> tuple[int, int]:
    """Order ids the way the server makes them (a test may know; clients may not)."""
    milliseconds, sequence = event_id.split("-")
    return int(milliseconds), int(sequence)


# Ids


def test_every_event_has_an_id_and_ids_only_grow(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    events = publish_seen(server, session_id, 50)
    events += publish_seen(server, session_id, 1)
    ids = [event.id for event in events]
    assert all(ids)
    assert sorted(ids, key=key) == ids
    assert len(set(ids)) == len(ids)


def test_connected_reset_and_heartbeats_carry_no_id(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    publish_seen(server, session_id, 1)
    with server.stream(session_id, {"Last-Event-ID": "1-0"}) as stream:
        body = stream.read_until(b'"type":"heartbeat"', timeout=30)
    blocks = body.split(b"\n\n")
    assert blocks[0].startswith(b"retry: 3000\ndata: {")
    assert blocks[1] == RESET.rstrip(b"\n")
    assert blocks[2].startswith(b"id: ")
    assert blocks[3].startswith(b'data: {"type":"heartbeat"')


# Resume


@pytest.mark.parametrize("via", ["header", "query"])
def test_resume_replays_what_was_missed_then_live_events(
    serve: Any, session_id: str, via: str
) -> None:
    server = serve(HEARTBEAT)
    events = publish_seen(server, session_id, 5)
    last = events[1].id
    if via == "header":
        stream = server.stream(session_id, {"Last-Event-ID": last})
    else:
        stream = server.stream(f"{session_id}?lastEventId={quote(last)}")
    with stream:
        assert stream.status == 200
        assert after_connected(stream) == b"".join(
            f"id: {e.id}\ndata: {e.data}\n\n".encode() for e in events[2:]
        )
        (live,) = publish_seen(server, session_id, 1)
        assert [(e.id, e.data) for e in next_events(stream, 1)] == [(live.id, live.data)]
        assert until_heartbeat(stream) == []


def test_resume_from_the_latest_id_replays_nothing(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    events = publish_seen(server, session_id, 3)
    with server.stream(session_id, {"Last-Event-ID": events[-1].id}) as stream:
        (connected,) = next_events(stream, 1)
        assert kind(connected) == "connected"
        assert until_heartbeat(stream) == []


def test_httpx_sse_client_resumes_with_last_event_id(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    events = publish_seen(server, session_id, 4)
    received: list[tuple[str, str]] = []
    with (
        httpx.Client(timeout=10) as client,
        connect_sse(
            client,
            "GET",
            f"{server.url}/api/stream/{session_id}",
            headers={"Last-Event-ID": events[0].id},
        ) as source,
    ):
        assert source.response.status_code == 200
        for event in source.iter_sse():
            if json.loads(event.data)["type"] != "heartbeat":
                received.append((event.id, json.loads(event.data)["type"]))
            if len(received) == 4:
                break
    assert received == [("", "connected")] + [(e.id, "progress") for e in events[1:]]


# Unknown, evicted, expired and malformed ids


def test_unknown_id_gives_reset_then_the_latest_event(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    events = publish_seen(server, session_id, 3)
    milliseconds, sequence = key(events[-1].id)
    for unknown in ("1-0", f"{milliseconds + 1}-0", f"{milliseconds}-{sequence + 1000}"):
        with server.stream(session_id, {"Last-Event-ID": unknown}) as stream:
            latest = f"id: {events[-1].id}\ndata: {events[-1].data}\n\n".encode()
            assert after_connected(stream) == RESET + latest
            assert until_heartbeat(stream) == []


def test_unknown_id_of_a_session_without_events_gives_reset_alone(
    serve: Any, session_id: str
) -> None:
    server = serve(HEARTBEAT)
    with server.stream(session_id, {"Last-Event-ID": "1732000000000-0"}) as stream:
        assert after_connected(stream) == RESET
        assert until_heartbeat(stream) == []
        (live,) = publish_seen(server, session_id, 1)
        assert [e.id for e in next_events(stream, 1)] == [live.id]


def test_id_evicted_from_history_gives_reset_then_latest(serve: Any, session_id: str) -> None:
    server = serve(SMALL_HISTORY)
    events = publish_seen(server, session_id, 8)  # the history keeps the last 5
    with server.stream(session_id, {"Last-Event-ID": events[1].id}) as stream:
        assert after_connected(stream) == RESET + (
            f"id: {events[-1].id}\ndata: {events[-1].data}\n\n".encode()
        )
    # From the event just before the oldest stored one, or a later one,
    # nothing is missing: no reset.
    for start in (2, 3):
        with server.stream(session_id, {"Last-Event-ID": events[start].id}) as stream:
            replayed = next_events(stream, 8 - start)[1:]
            assert [e.id for e in replayed] == [e.id for e in events[start + 1 :]]
            assert until_heartbeat(stream) == []


def test_id_of_an_expired_history_gives_reset(serve: Any, session_id: str) -> None:
    server = serve(CLOCK_TTL, CLOCK)
    (old,) = publish_seen(server, session_id, 1)
    advance_clock(server, TTL + 1)
    (new,) = publish_seen(server, session_id, 1)
    assert key(new.id) > key(old.id)
    with server.stream(session_id, {"Last-Event-ID": old.id}) as stream:
        assert after_connected(stream) == RESET + frame(new)
    advance_clock(server, TTL / 2)  # not yet
    with server.stream(session_id, {"Last-Event-ID": old.id}) as stream:
        assert after_connected(stream) == RESET + frame(new)
    advance_clock(server, TTL / 2 + 1)
    with server.stream(session_id, {"Last-Event-ID": new.id}) as stream:
        assert after_connected(stream) == RESET
        assert until_heartbeat(stream) == []


MALFORMED = [
    "abc",
    "1-",
    "-1",
    "1",
    "1-2-3",
    "1.0-0",
    "+1-0",
    "0x1-0",
    "1-0abc",
    "1_0-0",
    "9" * 16 + "-0",
    "1-" + "9" * 16,
    "9" * 40 + "-" + "9" * 40,
    "x" * 1000,
    "null",
    "1 - 0",
]


@pytest.mark.parametrize("value", MALFORMED, ids=lambda v: ascii(v)[:24])
def test_malformed_last_event_id_header_is_400_json(
    serve: Any, session_id: str, value: str
) -> None:
    server = serve(HEARTBEAT)
    publish_seen(server, session_id, 1)
    with server.stream(session_id, {"Last-Event-ID": value}) as response:
        assert response.status == 400
        assert response.headers["content-type"] == "application/json"
        body = response.json()
    assert isinstance(body, dict)
    assert body["error"] == "invalid_last_event_id"
    assert isinstance(body["message"], str)


@pytest.mark.parametrize(
    "value", [*MALFORMED, "\u0661-\u0660", "1-0\x00", "\u2028", "1-0\n"], ids=ascii
)
def test_malformed_last_event_id_query_is_400_json(serve: Any, session_id: str, value: str) -> None:
    server = serve(HEARTBEAT)
    response = httpx.get(
        f"{server.url}/api/stream/{session_id}", params={"lastEventId": value}, timeout=10
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "invalid_last_event_id"
    assert httpx.get(f"{server.url}/health", timeout=10).text == "ok"


def test_empty_last_event_id_is_a_fresh_connect(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    (event,) = publish_seen(server, session_id, 1)
    with server.stream(session_id + "?lastEventId=", {"Last-Event-ID": ""}) as stream:
        connected, snapshot = next_events(stream, 2)
        assert (kind(connected), snapshot.id) == ("connected", event.id)


# What a client gets on connect without Last-Event-ID


def test_replay_latest_sends_the_latest_event_after_connected(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    events = publish_seen(server, session_id, 3)
    with server.stream(session_id) as stream:
        latest = f"id: {events[-1].id}\ndata: {events[-1].data}\n\n".encode()
        assert after_connected(stream) == latest
        assert until_heartbeat(stream) == []
        (live,) = publish_seen(server, session_id, 1)
        assert [e.id for e in next_events(stream, 1)] == [live.id]


def test_a_session_without_events_starts_with_connected_alone(serve: Any, session_id: str) -> None:
    server = serve(HEARTBEAT)
    with server.stream(session_id) as stream:
        assert after_connected(stream) == b""
        assert until_heartbeat(stream) == []


def test_replay_all_sends_the_whole_history(serve: Any, session_id: str) -> None:
    server = serve({**SMALL_HISTORY, "SSE_SESSIONS_REPLAY_ON_CONNECT": "all"})
    events = publish_seen(server, session_id, 7)
    with server.stream(session_id) as stream:
        assert after_connected(stream) == b"".join(
            f"id: {e.id}\ndata: {e.data}\n\n".encode() for e in events[-5:]
        )
        assert until_heartbeat(stream) == []
        (live,) = publish_seen(server, session_id, 1)
        assert [e.id for e in next_events(stream, 1)] == [live.id]


def test_replay_none_sends_only_live_events(serve: Any, session_id: str) -> None:
    server = serve({**HEARTBEAT, "SSE_SESSIONS_REPLAY_ON_CONNECT": "none"})
    publish_seen(server, session_id, 3)
    with server.stream(session_id) as stream:
        assert after_connected(stream) == b""
        assert until_heartbeat(stream) == []
        (live,) = publish_seen(server, session_id, 1)
        assert [e.id for e in next_events(stream, 1)] == [live.id]


# The proof: reconnect again and again while events pour in

CLIENTS = 4  # three raw-socket clients and one httpx-sse client
RECONNECTS = 20
EVENTS = 1000
BATCH = 10


class Watcher:
    """One client that hangs up at random moments and resumes from its last id."""

    def __init__(self, server: Server, session_id: str, index: int) -> None:
        self.server = server
        self.session_id = session_id
        self.random = random.Random(index)
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.connections = 0
        self.connected = threading.Event()
        self.error: BaseException | None = None
        self.done = False

    @property
    def last_id(self) -> str | None:
        return self.seen[-1][0] if self.seen else None

    def take(self, event_id: str, data: str) -> None:
        value = json.loads(data)
        assert value["type"] not in ("reset", "connected"), (value, self.connections)
        if value["type"] != "heartbeat":
            self.seen.append((event_id, value))
            self.done = value["type"] == "complete"

    def run(self, use_httpx: bool, deadline: float) -> None:
        try:
            while not self.done:
                assert time.monotonic() < deadline, "the test ran out of time"
                if use_httpx:
                    self.connect_httpx()
                else:
                    self.connect_raw()
        except BaseException as exc:
            self.error = exc

    def connect_raw(self) -> None:
        path, headers = self.session_id, {}
        if self.last_id is not None:
            if self.connections % 2:
                headers["Last-Event-ID"] = self.last_id
            else:
                path += f"?lastEventId={self.last_id}"
        with self.server.stream(path, headers) as stream:
            assert stream.status == 200
            self.connections += 1
            (connected,) = stream.events(1)
            assert json.loads(connected.data)["type"] == "connected"
            self.connected.set()
            # Sometimes hang up at once, sometimes after a while; the last
            # connection stays until the stream ends.
            linger = self.random.choice([0, 0.01, 0.05, 0.1])
            until = time.monotonic() + linger
            while not self.done and not stream.ended:
                for event in stream.pending_events(wait=0.02):
                    self.take(event.id, event.data)
                # Hang up only with an id to resume from: without one a client
                # rightly gets the latest event alone, as a new page would.
                reconnect = self.connections <= RECONNECTS and self.last_id is not None
                if reconnect and time.monotonic() >= until:
                    return
            if self.done:
                assert stream.read_to_end(timeout=30)  # the server ends it after complete

    def connect_httpx(self) -> None:
        headers = {"Last-Event-ID": self.last_id} if self.last_id is not None else {}
        with (
            httpx.Client(timeout=10) as client,
            connect_sse(
                client, "GET", f"{self.server.url}/api/stream/{self.session_id}", headers=headers
            ) as source,
        ):
            assert source.response.status_code == 200
            self.connections += 1
            events = source.iter_sse()
            assert json.loads(next(events).data)["type"] == "connected"
            self.connected.set()
            budget = self.random.randint(0, 40)
            for event in events:
                self.take(event.id, event.data)
                budget -= 1
                reconnect = self.connections <= RECONNECTS and self.last_id is not None
                if self.done or (reconnect and budget <= 0):
                    break
            if self.done:
                assert list(events) == []  # the server ends it after complete


def test_clients_reconnecting_while_events_pour_in_see_each_event_once_in_order(
    serve: Any, session_id: str
) -> None:
    # Reading history yields (as a network backend's would), so events are
    # published while a resuming stream reads its replay: they are both in the
    # replay and queued live, and must be written once.
    server = serve({**HEARTBEAT, "SSE_SESSIONS_HISTORY_SIZE": 5000}, {"slow_history": 0.02})
    deadline = time.monotonic() + 60
    watchers = [Watcher(server, session_id, index) for index in range(CLIENTS)]
    threads = [
        threading.Thread(target=w.run, args=(i == CLIENTS - 1, deadline), daemon=True)
        for i, w in enumerate(watchers)
    ]
    for thread in threads:
        thread.start()
    for watcher in watchers:
        assert watcher.connected.wait(10)
    batches = 0
    while batches * BATCH < EVENTS or min(w.connections for w in watchers) <= RECONNECTS:
        assert time.monotonic() < deadline, [w.connections for w in watchers]
        assert all(w.error is None for w in watchers), [w.error for w in watchers]
        server.publish(session_id, {"batch": batches}, count=BATCH)
        batches += 1
    server.publish(session_id, {"batch": batches}, type="complete")
    for thread in threads:
        thread.join(max(0, deadline - time.monotonic()))
        assert not thread.is_alive()
    expected = [(b, n) for b in range(batches) for n in range(BATCH)]
    for watcher in watchers:
        if watcher.error is not None:
            raise watcher.error
        assert watcher.connections > RECONNECTS
        ids = [event_id for event_id, _ in watcher.seen]
        assert len(set(ids)) == len(ids)
        assert sorted(ids, key=key) == ids
        progress = [(v["batch"], v["n"]) for _, v in watcher.seen if v["type"] == "progress"]
        assert progress == expected
        assert [v["type"] for _, v in watcher.seen[-1:]] == ["complete"]


@pytest.mark.parametrize("mode", ["latest", "none"])
def test_events_published_while_a_new_stream_reads_its_snapshot_all_arrive(
    serve: Any, session_id: str, mode: str
) -> None:
    # Reading the snapshot waits until the test lets it (as a slow network
    # backend might take its time): events published meanwhile reached the new
    # connection, which was subscribed first; it must write them all, not only
    # the newest.
    server = serve({**HEARTBEAT, "SSE_SESSIONS_REPLAY_ON_CONNECT": mode}, {"hold_history": True})
    server.publish(session_id, {"k": 0})
    server.wait_for("connections", 0)
    # The view's first read (is the session over?) passes; the snapshot's waits.
    server.post("/debug/history/hold", {"after": 1})
    opened: list[RawStream] = []
    opener = threading.Thread(
        target=lambda: opened.append(
            RawStream(server.port, f"/api/stream/{session_id}", timeout=30)
        )
    )
    opener.start()  # its response head comes only after the snapshot is read
    try:
        server.wait_for("connections", 1)
        wait_until(lambda: server.post("/debug/history/status")["waiting"] == 1)
        assert server.publish(session_id, {"k": 1}) == [1]
        assert server.publish(session_id, {"k": 2}) == [1]
        assert not opened  # the race: both came while the snapshot was being read
    finally:
        server.post("/debug/history/release")
        opener.join(30)
    (stream,) = opened
    with stream:
        events = next_events(stream, 3)
    assert kind(events[0]) == "connected"
    assert [e.json()["k"] for e in events[1:]] == [1, 2]  # type: ignore[index]


# The maximum stream life


def test_a_stream_ends_at_its_maximum_life_and_resumes_without_loss(
    serve: Any, session_id: str
) -> None:
    server = serve({**HEARTBEAT, "SSE_SESSIONS_MAX_STREAM_SECONDS": 1.5})

    def numbers(events: list[ServerSentEvent]) -> list[int]:
        values = [event.json() for event in events if kind(event) == "progress"]
        return [value["round"] * 10 + value["n"] for value in values]  # type: ignore[index]

    seen: list[int] = []
    last_id = ""
    for round in range(3):
        with server.stream(session_id, {"Last-Event-ID": last_id}) as stream:
            assert stream.status == 200
            server.publish(session_id, {"round": round}, count=4)  # while connected
            stream.read_to_end(timeout=30)  # the server ends it
            events = stream.pending_events()
        seen += numbers(events)
        last_id = [event for event in events if kind(event) == "progress"][-1].id
        server.publish(session_id, {"round": round + 5}, count=2)  # while disconnected
    with server.stream(session_id, {"Last-Event-ID": last_id}) as stream:
        seen += numbers(next_events(stream, 3))  # connected, then the two missed
    assert seen == [0, 1, 2, 3, 50, 51, 10, 11, 12, 13, 60, 61, 20, 21, 22, 23, 70, 71]
