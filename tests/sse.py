"""What the stream tests share: configs, and reading a stream up to a point the
server itself marks (a heartbeat), instead of for a guessed time."""

from __future__ import annotations

import time

from flask_sse_sessions._wire import ServerSentEvent
from tests.harness import Server
from tests.rawhttp import RawStream

HEARTBEAT = {"SSE_SESSIONS_HEARTBEAT_INTERVAL": 1}
SMALL_HISTORY = {**HEARTBEAT, "SSE_SESSIONS_HISTORY_SIZE": 5}
REPLAY_NONE = {**HEARTBEAT, "SSE_SESSIONS_REPLAY_ON_CONNECT": "none"}
REPLAY_ALL = {**HEARTBEAT, "SSE_SESSIONS_REPLAY_ON_CONNECT": "all"}
# History expires after TTL seconds of a clock the test moves (the "clock" hook).
TTL = 60
CLOCK_TTL = {**HEARTBEAT, "SSE_SESSIONS_HISTORY_TTL": TTL}
CLOCK = {"clock": True}
RESET = b'data: {"type":"reset"}\n\n'
HEARTBEAT_FRAME = b'data: {"type":"heartbeat"'
DEADLINE = 30.0


def kind(event: ServerSentEvent) -> str:
    value = event.json()
    assert isinstance(value, dict)
    return str(value["type"])


def without_heartbeats(events: list[ServerSentEvent]) -> list[ServerSentEvent]:
    return [event for event in events if kind(event) != "heartbeat"]


def next_events(stream: RawStream, count: int, timeout: float = DEADLINE) -> list[ServerSentEvent]:
    """The next ``count`` events other than heartbeats."""
    deadline = time.monotonic() + timeout
    taken: list[ServerSentEvent] = []
    while len(taken) < count:
        taken += without_heartbeats(stream.events(1, timeout=deadline - time.monotonic()))
    return taken


def until_heartbeat(stream: RawStream, timeout: float = DEADLINE) -> list[ServerSentEvent]:
    """The events before the next heartbeat (which is consumed too).

    A stream writes in order: what the server had to send when it wrote a
    heartbeat came before it. So this is "everything sent so far", decided by
    the server's own order instead of a guessed wait.
    """
    deadline = time.monotonic() + timeout
    taken: list[ServerSentEvent] = []
    while True:
        (event,) = stream.events(1, timeout=deadline - time.monotonic())
        if kind(event) == "heartbeat":
            return taken
        taken.append(event)


def types_until_heartbeat(stream: RawStream) -> list[str]:
    return [kind(event) for event in until_heartbeat(stream)]


def after_connected(stream: RawStream) -> bytes:
    """The body between the (retry + connected) block and the first heartbeat,
    byte for byte: what the server replays on connect. Its events are consumed."""
    until_heartbeat(stream)
    rest = bytes(stream.body).split(b"\n\n", 1)[1]
    return rest[: rest.index(HEARTBEAT_FRAME)]


def frame(event: ServerSentEvent) -> bytes:
    """The bytes a stream writes for ``event``."""
    return f"id: {event.id}\ndata: {event.data}\n\n".encode()


def publish_seen(server: Server, session_id: str, count: int) -> list[ServerSentEvent]:
    """Publish ``count`` progress events (``n`` = 0, 1, ...) and return them as a
    client that was connected saw them.

    The witness resumes from the latest stored event, so it is replayed nothing
    and sees ``connected`` and then exactly the new events.
    """
    import httpx

    latest = httpx.get(f"{server.url}/api/stream/{session_id}/latest", timeout=10)
    headers = {"Last-Event-ID": latest.json()["id"]} if latest.status_code == 200 else {}
    with server.stream(session_id, headers) as witness:
        (connected,) = next_events(witness, 1)
        assert kind(connected) == "connected"
        server.publish(session_id, {}, count=count)
        events = next_events(witness, count)
    assert [event.json()["n"] for event in events] == list(range(count))  # type: ignore[index]
    return events


def advance_clock(server: Server, seconds: float) -> None:
    """Move the server's history clock on (a server started with the "clock" hook)."""
    server.post("/debug/clock", {"advance": seconds})
