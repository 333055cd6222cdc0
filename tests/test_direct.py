"""Direct delivery, byte for byte: what broadcasts and the heartbeat clock write
to idle sockets themselves is exactly what gunicorn writes for a stream's chunks,
in order, once, whatever happens in between.

Real gunicorn (``-k gevent``), raw sockets with small buffers (so that sockets
take only part of a write and the stream finishes it), a strict decoder of
chunked framing, and hypothesis to interleave direct writes, coalesced bursts,
stalled readers, heartbeats and resumes with replay.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_sse_sessions._wire import Parser, ServerSentEvent
from tests.harness import Server, wait_until

HEARTBEAT = 0.2
CONFIG = {
    "SSE_SESSIONS_HEARTBEAT_INTERVAL": HEARTBEAT,
    "SSE_SESSIONS_HISTORY_SIZE": 5000,
    "SSE_SESSIONS_QUEUE_SIZE": 5000,
    # A small kernel send buffer: large bursts fill it, so direct writes
    # are cut short and the stream has to finish them.
    "SSE_SESSIONS_SEND_BUFFER_BYTES": 4096,
    "SSE_SESSIONS_REPLAY_ON_CONNECT": "all",
}
HOOKS = {"count_direct_writes": True}
FINAL_CHUNK = b"0\r\n\r\n"
_CHUNK_SIZE = re.compile(rb"(0|[1-9A-F][0-9A-F]*)\r\n")


def decode_chunked(body: bytes, *, complete: bool) -> tuple[list[bytes], bool]:
    """The chunks of a chunked body, checked byte for byte as gunicorn frames
    them: the size in upper-case hex without leading zeros, CRLF, exactly that
    many bytes, CRLF; the body ends with ``0`` CRLF CRLF and nothing after.

    With ``complete`` False the body may stop anywhere (the client left):
    a chunk cut short is dropped. Returns the chunks and whether the last came.
    """
    chunks, offset = [], 0
    while offset < len(body):
        match = _CHUNK_SIZE.match(body, offset)
        if match is None:
            assert not complete and len(body) - offset < 16, body[offset : offset + 80]
            break
        size = int(match[1], 16)
        start = match.end()
        if size == 0:
            assert body[start:] == b"\r\n", body[offset:]
            return chunks, True
        if len(body) < start + size + 2:
            assert not complete, f"a chunk of {size} bytes cut short"
            break
        assert body[start + size : start + size + 2] == b"\r\n", body[start + size :][:40]
        chunks.append(body[start : start + size])
        offset = start + size + 2
    assert not complete, "the body did not end with its last chunk"
    return chunks, False


def blocks(chunks: list[bytes]) -> list[bytes]:
    """The SSE blocks of a stream's chunks; every chunk holds whole blocks."""
    found = []
    for chunk in chunks:
        assert chunk.endswith(b"\n\n"), chunk[-80:]
        found.extend(block + b"\n\n" for block in chunk[:-2].split(b"\n\n"))
    return found


def parse(block: bytes) -> ServerSentEvent:
    (event,) = Parser().feed(block.decode("utf-8"))
    return event


class Client:
    """A raw HTTP client of one session that reads in a thread of its own, can
    stop reading (its small receive buffer fills), and resumes like an
    EventSource: a new request with the last id it received in full."""

    def __init__(self, port: int, session_id: str, version: str = "1.1") -> None:
        self.port = port
        self.session_id = session_id
        self.version = version
        self.reading = threading.Event()
        self.reading.set()
        # Per connection: the raw bytes received, head included.
        self.responses: list[bytearray] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.connect(None)

    def connect(self, last_id: str | None) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", self.port))
        extra = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
        sock.sendall(
            f"GET /api/stream/{self.session_id} HTTP/{self.version}\r\n"
            f"Host: 127.0.0.1\r\n{extra}\r\n".encode()
        )
        raw = bytearray()
        self.responses.append(raw)
        self._sock = sock
        self._thread = threading.Thread(target=self._read, args=(sock, raw), daemon=True)
        self._thread.start()

    def _read(self, sock: socket.socket, raw: bytearray) -> None:
        try:
            while True:
                self.reading.wait()
                data = sock.recv(65536)
                if not data:
                    return
                raw += data
                if self.version == "1.1" and raw.endswith(b"\r\n" + FINAL_CHUNK):
                    return
        except OSError:
            return  # closed by resume()

    def events(self, index: int, *, complete: bool) -> tuple[list[bytes], bool]:
        """The event blocks (heartbeats and ``connected`` left out) of connection
        ``index``, checked, and whether it ended with its last chunk."""
        raw = bytes(self.responses[index])
        head, found, body = raw.partition(b"\r\n\r\n")
        if not found:
            assert not complete
            return [], False
        assert head.startswith(f"HTTP/{self.version} 200 OK\r\n".encode()), head
        if self.version == "1.1":
            assert b"\r\nTransfer-Encoding: chunked\r\n" in head
            chunks, ended = decode_chunked(body, complete=complete)
        else:
            assert b"Transfer-Encoding" not in head
            chunks, ended = [body[: body.rfind(b"\n\n") + 2]] if b"\n\n" in body else [], True
        found_blocks = blocks(chunks)
        if not found_blocks:
            assert not complete, "the stream ended without a byte"
            return [], ended
        assert parse(found_blocks[0]).json()["type"] == "connected"
        return [b for b in found_blocks[1:] if parse(b).json()["type"] != "heartbeat"], ended

    def resume(self) -> None:
        """Hang up now and reconnect with the last id received in full."""
        assert self._sock is not None and self._thread is not None
        self._sock.close()
        self._thread.join(10)
        self.reading.set()
        received, _ = self.events(-1, complete=False)
        last = parse(received[-1]).id if received else None
        if last is None and len(self.responses) > 1:
            for earlier in reversed(range(len(self.responses) - 1)):
                got, _ = self.events(earlier, complete=False)
                if got:
                    last = parse(got[-1]).id
                    break
        self.connect(last)

    def finish(self, timeout: float) -> list[bytes]:
        """Read to the end of the stream; every event block received, in order."""
        self.reading.set()
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the stream did not end: {self.responses[-1][-300:]!r}"
        if self._sock is not None:
            self._sock.close()
        received = []
        for index in range(len(self.responses)):
            last = index == len(self.responses) - 1
            got, ended = self.events(index, complete=last)
            assert ended or not last
            received.extend(got)
        return received


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server(CONFIG, HOOKS) as server:
        yield server


def direct_counts(server: Server) -> tuple[int, int]:
    stats = server.stats()
    return int(stats["direct_sends"]), int(stats["direct_partial"])


def check_same_stream(clients: list[Client], server: Server, session_id: str, total: int) -> None:
    """Every client got exactly the session's events, byte for byte as they are
    stored, in id order and once: what a late client replays from history."""
    auditor = Client(server.port, session_id)
    expected = auditor.finish(20)
    assert len(expected) == total + 1  # the events and the `complete`
    ids = [parse(block).id for block in expected]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert len(set(ids)) == len(ids)
    for block in expected:
        event = parse(block)
        assert block == f"id: {event.id}\ndata: {event.data}\n\n".encode()
    for client in clients:
        received = client.finish(20)
        assert [parse(b).id for b in received] == ids, client.version
        assert received == expected


def test_direct_writes_are_the_bytes_gunicorn_writes(server: Server) -> None:
    session_id = "direct-plain"
    writes_before = server.stats()["direct_writes"]
    clients = [Client(server.port, session_id) for _ in range(3)]
    clients.append(Client(server.port, session_id, version="1.0"))  # never direct
    wait_until(lambda: server.stats()["connections"] >= 4, 10)
    server.publish(session_id, {"step": "one by one"}, count=20, yield_every=1)
    time.sleep(3 * HEARTBEAT)  # heartbeats from the clock, between events
    server.publish(session_id, {"step": "a burst"}, count=30)
    server.publish(session_id, None, type="complete")
    check_same_stream(clients, server, session_id, 50)
    # 21 writes to each of 3 clients if every stream was idle at each event;
    # a stream still busy with the previous chunk is woken instead.
    assert server.stats()["direct_writes"] - writes_before >= 21
    # A burst from one view is coalesced into one chunk per connection.
    (burst,) = [
        chunk
        for chunk in decode_chunked(bytes(clients[0].responses[0]).partition(b"\r\n\r\n")[2],
                                    complete=True)[0]
        if b'"step":"a burst"' in chunk
    ]  # fmt: skip
    assert burst.count(b"\nid: ") == 29


def test_partial_direct_writes_are_finished_by_the_stream(server: Server) -> None:
    """Events larger than the sockets' buffers: the direct write is cut short,
    the stream writes the rest first, and a client that stopped reading for a
    while still gets every byte."""
    session_id = "direct-partial"
    _, partial_before = direct_counts(server)
    clients = [Client(server.port, session_id) for _ in range(2)]
    wait_until(lambda: server.stats()["connections"] >= 2, 10)
    clients[1].reading.clear()
    padding = {"pad": "p" * 6000}
    server.publish(session_id, padding, count=12, yield_every=1)
    time.sleep(4 * HEARTBEAT)
    clients[1].reading.set()
    server.publish(session_id, padding, count=12, yield_every=3)
    server.publish(session_id, None, type="complete")
    check_same_stream(clients, server, session_id, 24)
    _, partial = direct_counts(server)
    assert partial > partial_before


Step = tuple[str, int]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 12)),  # one by one, yielding
        st.tuples(st.just("burst"), st.integers(2, 40)),  # from one view, coalesced
        st.tuples(st.just("large"), st.integers(1, 6)),  # bigger than the buffers
        st.tuples(st.just("stall"), st.integers(0, 2)),  # a client stops reading
        st.tuples(st.just("read"), st.integers(0, 2)),  # and reads again
        st.tuples(st.just("resume"), st.integers(0, 2)),  # reconnects with its last id
        st.tuples(st.just("join"), st.just(0)),  # a new client replays all
        st.tuples(st.just("pause"), st.integers(1, 4)),  # heartbeats are due
    ),
    min_size=3,
    max_size=10,
)


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps)
def test_interleavings_keep_every_stream_exact(server: Server, steps: list[Step]) -> None:
    session_id = f"direct-{time.monotonic_ns()}"
    clients = [Client(server.port, session_id, version) for version in ("1.1", "1.1", "1.0")]
    wait_until(lambda: len(_opened(clients)) == len(clients), 10)
    total = 0
    for kind, value in steps:
        body: dict[str, Any]
        if kind == "publish":
            body = {"count": value, "yield_every": 1}
        elif kind == "burst":
            body = {"count": value}
        elif kind == "large":
            body = {"count": value, "yield_every": 2, "data": {"pad": "l" * 9000}}
        else:
            _act(clients, kind, value, server, session_id)
            continue
        server.post(f"/publish/{session_id}", {"data": None, **body})
        total += value
    server.publish(session_id, None, type="complete")
    check_same_stream(clients, server, session_id, total)


def _opened(clients: list[Client]) -> list[Client]:
    return [c for c in clients if b"\r\n\r\n" in bytes(c.responses[-1])]


def _act(clients: list[Client], kind: str, index: int, server: Server, session_id: str) -> None:
    client = clients[index % len(clients)]
    if kind == "stall":
        client.reading.clear()
    elif kind == "read":
        client.reading.set()
    elif kind == "resume":
        client.resume()
    elif kind == "join":
        clients.append(Client(server.port, session_id))
    elif kind == "pause":
        time.sleep(index * HEARTBEAT)
