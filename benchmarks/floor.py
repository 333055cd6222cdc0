"""The floor: the least work Python can do to fan SSE events out under gevent.

A bare ``gevent.server.StreamServer`` that speaks just enough HTTP/1.1 for the
benchmark, with the same routes and the same response shape as ``benchmarks/app.py``
so the load client does the same work against both:

``GET /api/stream/<sid>``
    ``200`` with the SSE headers and ``Transfer-Encoding: chunked`` (as gunicorn
    sends ours), then the ``retry:`` + connected block. The handler greenlet then
    blocks reading the socket until EOF (one greenlet per connection, like
    gunicorn's), which is also how it notices a hang-up.
``POST /publish/<sid>`` ``{"data": {...}, "count": n}``
    encodes each event once (JSON, frame, chunk header) and ``sendall``\\ s the
    same bytes to every subscriber socket of the session, event by event: no
    queue, no coalescing.
``POST /publish-many`` ``{"sessions": [...], "count": n, "data": {...}}``
    the same for several sessions in one request.
``POST /load`` ``{"sessions": [...], "rate": r, "seconds": s, "seed": k}``
    a background greenlet publishes ``r`` events per second to random sessions.
``GET /debug/stats``
    ``{"connections", "sessions", "pid", "rss_kib"}``.

Every event carries ``"s0": time.time()`` taken just before its fan-out. One
greenlet writes a heartbeat to every connection each ``--heartbeat`` seconds.

Run: ``python -m benchmarks.floor --port 8001 [--heartbeat 5]``.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

from benchmarks.common import (  # noqa: E402
    EventIds,
    connected_json,
    dumps,
    heartbeat_json,
    progress,
    rss_kib,
    run_load,
)

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: floor\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def _chunk(body: bytes) -> bytes:
    return b"%X\r\n%s\r\n" % (len(body), body)


class Floor:
    def __init__(self, heartbeat: float) -> None:
        self.sessions: dict[str, dict[Any, None]] = {}
        self.count = 0
        self.heartbeat = heartbeat
        self.ids = EventIds()

    # -- HTTP ----------------------------------------------------------------

    def handle(self, sock: Any, _address: Any) -> None:
        raw = b""
        while b"\r\n\r\n" not in raw:
            data = sock.recv(65536)
            if not data:
                return
            raw += data
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        while len(body) < length:
            data = sock.recv(65536)
            if not data:
                return
            body += data
        if method == "GET" and path.startswith("/api/stream/"):
            self.stream(sock, path[len("/api/stream/") :].split("?")[0])
            return
        payload = json.loads(body) if body else {}
        if method == "POST" and path.startswith("/publish/"):
            answer: Any = {"reached": self.publish([path[len("/publish/") :]], payload)}
        elif method == "POST" and path == "/publish-many":
            answer = {"reached": self.publish(payload["sessions"], payload)}
        elif method == "POST" and path == "/load":
            gevent.spawn(self.load, payload)
            answer = {"started": True}
        elif method == "GET" and path == "/debug/stats":
            answer = {
                "connections": self.count,
                "sessions": len(self.sessions),
                "pid": os.getpid(),
                "rss_kib": rss_kib(),
            }
        elif path == "/health":
            answer = "ok"
        else:
            sock.sendall(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return
        out = json.dumps(answer).encode()
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(out), out)
        )

    def stream(self, sock: Any, session_id: str) -> None:
        connected = connected_json(session_id).encode()
        sock.sendall(SSE_HEAD + _chunk(b"retry: 3000\ndata: %s\n\n" % connected))
        subscribers = self.sessions.setdefault(session_id, {})
        subscribers[sock] = None
        self.count += 1
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
        finally:
            subscribers.pop(sock, None)
            if not subscribers and self.sessions.get(session_id) is subscribers:
                del self.sessions[session_id]
            self.count -= 1

    # -- publishing ------------------------------------------------------------

    def publish(self, session_ids: list[str], body: dict[str, Any]) -> list[int]:
        data = body.get("data") or {}
        reached = []
        for session_id in session_ids:
            for index in range(body.get("count", 1)):
                reached.append(self.send(session_id, {**data, "n": index}))
        return reached

    def send(self, session_id: str, data: dict[str, Any]) -> int:
        """Encode one event once and write it to each subscriber socket, now."""
        payload = dumps(progress(data)).encode()
        frame = _chunk(b"id: %s\ndata: %s\n\n" % (self.ids.next(session_id).encode(), payload))
        subscribers = self.sessions.get(session_id)
        if not subscribers:
            return 0
        for sock in list(subscribers):
            try:
                sock.sendall(frame)
            except OSError:
                subscribers.pop(sock, None)
        return len(subscribers)

    def load(self, body: dict[str, Any]) -> None:
        run_load(body, self.send, gevent.sleep)

    def heartbeats(self) -> None:
        while True:
            gevent.sleep(self.heartbeat)
            frame = _chunk(b"data: %s\n\n" % heartbeat_json().encode())
            for subscribers in list(self.sessions.values()):
                for sock in list(subscribers):
                    try:
                        sock.sendall(frame)
                    except OSError:
                        subscribers.pop(sock, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    args = parser.parse_args()
    floor = Floor(args.heartbeat)
    server = StreamServer(("127.0.0.1", args.port), floor.handle, backlog=2048)
    gevent.spawn(floor.heartbeats)
    server.serve_forever()


if __name__ == "__main__":
    main()
