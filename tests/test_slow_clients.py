"""Slow clients end to end: a client that stops reading is cut, never waited
for, and resumes without a loss; clients that read are never cut, not even by a
burst of broadcasts from one view, which never yields to their streams."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from flask_sse_sessions._wire import Parser, ServerSentEvent
from tests.harness import Server, wait_until
from tests.rawhttp import RawStream

QUEUE_SIZE = 256
CONFIG = {
    "SSE_SESSIONS_HEARTBEAT_INTERVAL": 1,
    "SSE_SESSIONS_QUEUE_SIZE": QUEUE_SIZE,
    "SSE_SESSIONS_HISTORY_SIZE": 1000,
}


def key(event_id: str) -> tuple[int, int]:
    milliseconds, sequence = event_id.split("-")
    return int(milliseconds), int(sequence)


# A reader is a process of its own: it only receives (into a file), so it
# drains its socket at full speed whatever the test process is doing.
READER = """
import socket, sys
port, path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
sock = socket.create_connection(("127.0.0.1", port))
sock.sendall(f"GET {path} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n".encode())
with open(out, "wb", buffering=0) as file:
    while data := sock.recv(1 << 20):
        file.write(data)
"""


class Reader:
    """A client that reads its stream as fast as it can, in a process of its own."""

    def __init__(self, server: Server, session_id: str) -> None:
        self.out = Path(tempfile.mkstemp(prefix="sse-test-reader-")[1])
        self.process = subprocess.Popen(
            [sys.executable, "-c", READER, str(server.port), f"/api/stream/{session_id}",
             str(self.out)]
        )  # fmt: skip
        events = self.wait_for(0, connected=True)
        assert events == []

    @property
    def ended(self) -> bool:
        """Whether the server ended the stream (the reader exits then)."""
        return self.process.poll() is not None

    def events(self) -> list[ServerSentEvent]:
        """The events received so far, ``connected`` and heartbeats left out."""
        return [
            event
            for event in parse_response(self.out.read_bytes())
            if json.loads(event.data)["type"] not in ("heartbeat", "connected")
        ]

    def wait_for(
        self, count: int, timeout: float = 60, connected: bool = False
    ) -> list[ServerSentEvent]:
        """The events once there are ``count`` of them (fewer if the stream ended)."""

        def arrived() -> tuple[list[ServerSentEvent]] | None:
            if connected and b'"type":"connected"' not in self.out.read_bytes():
                return None
            events = self.events()
            return (events,) if len(events) >= count or self.ended else None

        message = lambda: f"{len(self.events())} of {count} events"  # noqa: E731
        return wait_until(arrived, timeout, message)[0]

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self.out.unlink()


def parse_response(raw: bytes) -> list[ServerSentEvent]:
    """The events of a chunked stream response, as far as its chunks are complete."""
    if b"\r\n\r\n" not in raw:
        return []
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 "), head
    decoded = bytearray()
    offset = 0
    while True:
        line_end = body.find(b"\r\n", offset)
        if line_end < 0:
            break
        size = int(body[offset:line_end], 16)
        start = line_end + 2
        if size == 0 or len(body) < start + size + 2:
            break  # the end, or a chunk cut short
        decoded += body[start : start + size]
        offset = start + size + 2
    return list(Parser().feed(decoded.decode("utf-8", errors="ignore")))


def assert_every_event_once_in_order(events: list[ServerSentEvent], total: int) -> None:
    values = [json.loads(event.data) for event in events]
    assert [value["type"] for value in values] == ["progress"] * len(values), [
        value["type"] for value in values if value["type"] != "progress"
    ]
    assert [value["k"] for value in values] == list(range(total))
    ids = [event.id for event in events]
    assert len(set(ids)) == len(ids)
    assert sorted(ids, key=key) == ids


def publish_numbered(server: Server, session_id: str, start: int, count: int, **data: Any) -> int:
    """Publish ``count`` events from one view; event ``i`` carries ``k = start + i``."""
    server.publish(session_id, {"start": start, **data}, count=count)
    return start + count


def numbered(events: list[ServerSentEvent]) -> list[ServerSentEvent]:
    """Give each event its ``k`` (``start + n``) in place of the two fields."""
    out = []
    for event in events:
        value = json.loads(event.data)
        if "start" in value:
            value = {"type": value["type"], "k": value.pop("start") + value.pop("n")}
        out.append(ServerSentEvent(data=json.dumps(value), id=event.id))
    return out


def test_a_burst_from_one_view_does_not_cut_clients_that_read(serve: Any, session_id: str) -> None:
    server = serve(CONFIG)
    dropped = server.stats()["dropped"]
    readers = [Reader(server, session_id) for _ in range(3)]
    try:
        total = publish_numbered(server, session_id, 0, 600)
        for reader in readers:
            assert_every_event_once_in_order(numbered(reader.wait_for(total)), total)
        # Still connected, still live.
        total = publish_numbered(server, session_id, total, 1)
        for reader in readers:
            assert_every_event_once_in_order(numbered(reader.wait_for(total)), total)
            assert not reader.ended
    finally:
        for reader in readers:
            reader.close()
    assert server.stats()["dropped"] == dropped


def test_a_burst_larger_than_the_history_resets_instead_of_cutting(
    serve: Any, session_id: str
) -> None:
    server = serve(CONFIG)
    dropped = server.stats()["dropped"]
    reader = Reader(server, session_id)
    try:
        publish_numbered(server, session_id, 0, 1500)
        events = reader.wait_for(QUEUE_SIZE + 2)
        values = [json.loads(event.data) for event in events]
        # What the connection held, then a reset, then the latest event.
        assert [v.get("n") for v in values[:QUEUE_SIZE]] == list(range(QUEUE_SIZE))
        assert [v["type"] for v in values[QUEUE_SIZE:]] == ["reset", "progress"]
        assert values[-1]["n"] == 1499
        assert not reader.ended
    finally:
        reader.close()
    assert server.stats()["dropped"] == dropped


def test_a_burst_of_queue_plus_history_events_loses_nothing(serve: Any, session_id: str) -> None:
    # The connection holds the first QUEUE_SIZE events, the history the rest.
    server = serve(CONFIG)
    reader = Reader(server, session_id)
    try:
        total = publish_numbered(server, session_id, 0, QUEUE_SIZE + 1000)
        assert_every_event_once_in_order(numbered(reader.wait_for(total)), total)
    finally:
        reader.close()


def stalled_client(port: int, session_id: str) -> RawStream:
    """A client with a tiny receive buffer that sends its request and never reads."""
    return RawStream(port, f"/api/stream/{session_id}", receive_buffer=4096, read_head=False)


def read_what_arrived(stream: RawStream) -> list[ServerSentEvent]:
    """Drain a cut connection to its end; the events of the complete chunks it holds."""
    assert stream.response(timeout=30).status == 200
    stream.read_to_end(timeout=30)
    return stream.pending_events()


def test_a_client_that_stops_reading_is_cut_and_resumes_without_a_loss(
    serve: Any, session_id: str
) -> None:
    server = serve(CONFIG)
    dropped = server.stats()["dropped"]
    stalled = stalled_client(server.port, session_id)
    readers = [Reader(server, session_id) for _ in range(2)]
    blob = "x" * 16_000
    total = 0
    try:
        for _ in range(3):  # small events, one chunk each: these reach the client
            total = publish_numbered(server, session_id, total, 1)
        for reader in readers:
            reader.wait_for(total)
        deadline = time.monotonic() + 60
        while server.stats()["dropped"] == dropped:
            assert time.monotonic() < deadline, "the stalled client was never cut"
            total = publish_numbered(server, session_id, total, 50, blob=blob)
        assert server.stats()["dropped"] == dropped + 1
        # The readers were never held up by the stalled client, and never cut.
        for reader in readers:
            assert_every_event_once_in_order(numbered(reader.wait_for(total)), total)
            assert not reader.ended
        # The stalled client kept what reached it, and resumes after it.
        received = [e for e in numbered(read_what_arrived(stalled)) if e.id]
        assert len(received) < total - QUEUE_SIZE
        assert received, "the first small events fit in its buffer"
        with server.stream(session_id, {"Last-Event-ID": received[-1].id}) as resumed:
            rest = resumed.events(total - len(received) + 1, timeout=60)[1:]
        assert_every_event_once_in_order(received + numbered(rest), total)
    finally:
        stalled.close()
        for reader in readers:
            reader.close()


def test_bursts_of_large_events_do_not_cut_clients_that_read(serve: Any, session_id: str) -> None:
    # Each reader's stream is still writing one burst (megabytes, so its
    # write blocks for a while) when the next burst overflows its queue: it
    # was merely woken late, its socket drains, it must catch up, not be cut.
    server = serve(CONFIG)
    dropped = server.stats()["dropped"]
    readers = [Reader(server, session_id) for _ in range(2)]
    blob = "y" * 20_000
    try:
        threads = [
            threading.Thread(
                target=publish_numbered,
                args=(server, session_id, start, 300),
                kwargs={"blob": blob},
            )
            for start in (0, 300, 600)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
            assert not thread.is_alive()
        for reader in readers:
            events = numbered(reader.wait_for(900))
            assert not reader.ended, server.stats()
            values = [json.loads(event.data) for event in events]
            assert sorted(value["k"] for value in values) == list(range(900))
            ids = [event.id for event in events]
            assert sorted(set(ids), key=key) == ids
    finally:
        for reader in readers:
            reader.close()
    assert server.stats()["dropped"] == dropped
