"""The load client: one process, non-blocking sockets, ``select.epoll``, ``recv(16384)``.

It opens many ``GET /api/stream/<session>`` connections to one server, reads every
one of them in a single loop, and counts the events that carry a send time
(``"s0":<time.time() at broadcast>`` in their JSON, set by the server when it
broadcasts). The receive time is taken once per ``recv`` with the same clock, so
``now - s0`` is the broadcast-to-receipt latency of every delivery.

It never parses the chunked framing: every frame ends in a blank line (``\\n\\n``)
and a chunk-size line (``\\r\\n5a\\r\\n``) never holds one, so splitting the byte
stream on ``\\n\\n`` yields whole frames with, at worst, a chunk-size line in front.
Control requests (publish triggers, stats) go over their own short connections in
the same loop, so the streams are read while the server answers them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import select
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_MARK = b'"s0":'
_LINGER_RST = struct.pack("ii", 1, 0)


@dataclass
class Stream:
    """One stream connection."""

    sock: socket.socket
    path: str
    stalled: bool = False
    connecting: bool = True
    head_done: bool = False
    connected: bool = False
    closed: bool = False
    status: int = 0
    buf: bytes = b""
    events: int = 0
    heartbeats: int = 0


@dataclass
class Control:
    """One control request (``Connection: close``) and its response."""

    sock: socket.socket
    raw: bytes = b""
    done: bool = False

    @property
    def status(self) -> int:
        """The response's status code (0 before an answer)."""
        return int(self.raw[9:12]) if self.raw.startswith(b"HTTP/") else 0

    def json(self) -> Any:
        head, _, body = self.raw.partition(b"\r\n\r\n")
        if b"transfer-encoding: chunked" in head.lower():
            body = _unchunk(body)
        return json.loads(body)


@dataclass
class Tally:
    """What the client received since the last :meth:`LoadClient.reset_tally`."""

    deliveries: int = 0
    heartbeats: int = 0
    latencies: list[float] = field(default_factory=list)
    first_recv: float = 0.0
    last_recv: float = 0.0
    min_s0: float = float("inf")
    bytes: int = 0


class LoadClient:
    """Many SSE streams to ``127.0.0.1:port``, read in one epoll loop."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.epoll = select.epoll()
        self.streams: dict[int, Stream] = {}
        self.controls: dict[int, Control] = {}
        self.tally = Tally()
        self.connected = 0
        self.failed = 0
        self.settled = 0  # streams that connected or failed to, ever
        self.refused: Counter[int] = Counter()  # failed streams by status (0: none)

    # -- streams ---------------------------------------------------------------

    def open(
        self,
        paths: list[str],
        *,
        max_inflight: int = 256,
        timeout: float = 120.0,
        stall: float = 15.0,
        stalled: set[int] | None = None,
        stalled_rcvbuf: int = 4096,
        held: Callable[[], int] | None = None,
    ) -> float:
        """Open one stream per path and wait until the server holds each one.

        A stream is held once its first frame arrived. A server that sends nothing
        before the first event (flask-sse) is asked instead: ``held()`` is how many
        of these streams it holds (polled every 50 ms), and the streams count as
        connected when this returns. At most ``max_inflight`` streams are opening at
        once. It gives up after ``timeout`` or when nothing settled for ``stall``
        seconds (a server that stopped accepting), leaving the rest unconnected.

        ``stalled`` holds indexes of streams that are never read after their first
        frame (a tiny receive buffer makes them fill up fast).

        :returns: the seconds until the last stream was held (or failed); a wait
            for a stalled server is not counted.
        """
        stalled = stalled or set()
        start = time.monotonic()
        deadline = start + timeout
        settled_before, failed_before = self.settled, self.failed
        pending = list(enumerate(paths))
        pending.reverse()
        started = count = 0
        next_poll = progress_at = start
        progress = -1
        while (now := time.monotonic()) < deadline:
            if held is None:
                done = self.settled - settled_before
            else:
                if now >= next_poll:
                    count, next_poll = held(), now + 0.05
                done = count + self.failed - failed_before
            if done != progress:
                progress, progress_at = done, now
            elif now - progress_at > stall:
                break
            inflight = started - done
            if not pending and inflight <= 0:
                break
            while pending and inflight < max_inflight:
                index, path = pending.pop()
                self._connect(path, index in stalled, stalled_rcvbuf)
                started += 1
                inflight += 1
            self.pump_once(0.01)
        if held is not None:
            for stream in self.streams.values():
                if not (stream.connecting or stream.connected):
                    stream.connected = True
                    self.connected += 1
                    self.settled += 1
        return progress_at - start

    def _connect(self, path: str, stalled: bool, rcvbuf: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if stalled:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        err = sock.connect_ex((self.host, self.port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.failed += 1
            self.settled += 1
            return
        stream = Stream(sock, path, stalled=stalled)
        self.streams[sock.fileno()] = stream
        self.epoll.register(sock.fileno(), select.EPOLLOUT)

    def close_streams(self, *, reset: bool = True) -> None:
        """Close every stream: with RST (no TIME_WAIT left behind) or a normal FIN."""
        for fd, stream in list(self.streams.items()):
            self._drop(fd, stream, reset=reset)

    def close_some(self, count: int, *, reset: bool = False) -> int:
        """Close up to ``count`` connected streams; returns how many it closed."""
        closed = 0
        for fd, stream in list(self.streams.items()):
            if closed >= count:
                break
            if stream.connected:
                self._drop(fd, stream, reset=reset)
                closed += 1
        return closed

    def _drop(self, fd: int, stream: Stream, *, reset: bool) -> None:
        with contextlib.suppress(KeyError, OSError):
            self.epoll.unregister(fd)
        if reset:
            with contextlib.suppress(OSError):
                stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        stream.sock.close()
        stream.closed = True
        if stream.connected:
            self.connected -= 1
        self.streams.pop(fd, None)

    # -- control requests ------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> Control:
        """Send a request on its own connection; its answer is read by :meth:`pump_once`."""
        sock = socket.create_connection((self.host, self.port), timeout=10)
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + data)
        sock.setblocking(False)
        control = Control(sock)
        self.controls[sock.fileno()] = control
        self.epoll.register(sock.fileno(), select.EPOLLIN)
        return control

    def call(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
        """A control request whose JSON answer is awaited (the streams are read meanwhile)."""
        control = self.request(method, path, body)
        self.pump(lambda: control.done, timeout)
        if not control.done:
            raise TimeoutError(f"{method} {path}: no answer in {timeout} s")
        return control.json()

    def status_of(self, control: Control, timeout: float = 10.0) -> int:
        """Read until ``control``'s answer is in (the streams meanwhile); its status
        code, 0 if none came within ``timeout``."""
        self.pump(lambda: control.done, timeout)
        return control.status

    # -- the loop --------------------------------------------------------------

    def reset_tally(self) -> Tally:
        old, self.tally = self.tally, Tally()
        return old

    def pump(self, until: Any, timeout: float) -> bool:
        """Read until ``until()`` is true or ``timeout`` passes; returns ``until()``."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                return bool(until())
            self.pump_once(min(0.05, left))
        return True

    def drain(self, expected: int, timeout: float, quiet: float = 3.0) -> bool:
        """Read until the tally counts ``expected`` deliveries; returns whether it does.

        Lost events are not waited for: it gives up after ``timeout``, or once no
        delivery arrived for ``quiet`` seconds.
        """
        start = last_change = time.monotonic()
        seen = self.tally.deliveries
        while self.tally.deliveries < expected:
            now = time.monotonic()
            if now - start >= timeout or now - last_change >= quiet:
                return False
            self.pump_once(0.05)
            if self.tally.deliveries != seen:
                seen, last_change = self.tally.deliveries, time.monotonic()
        return True

    def pump_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.pump_once(min(0.05, left))

    def pump_once(self, timeout: float) -> None:
        streams, controls, tally = self.streams, self.controls, self.tally
        for fd, mask in self.epoll.poll(timeout, 4096):
            stream = streams.get(fd)
            if stream is None:
                control = controls.get(fd)
                if control is not None:
                    self._read_control(fd, control)
                continue
            if stream.connecting:
                self._finish_connect(fd, stream, mask)
                continue
            try:
                data = stream.sock.recv(16384)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self._lost(fd, stream)
                continue
            now = time.time()
            tally.bytes += len(data)
            buf = stream.buf + data if stream.buf else data
            if not stream.head_done:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    stream.buf = buf
                    continue
                stream.status = int(buf[9:12])
                stream.head_done = True
                buf = buf[end + 4 :]
                if stream.status != 200:
                    self._lost(fd, stream)
                    continue
            if b"\n\n" not in buf:
                stream.buf = buf
                continue
            frames = buf.split(b"\n\n")
            stream.buf = frames.pop()
            for frame in frames:
                at = frame.find(_MARK)
                if at < 0:
                    if not stream.connected:
                        stream.connected = True
                        self.connected += 1
                        self.settled += 1
                        if stream.stalled:
                            self.epoll.modify(fd, 0)
                    else:
                        stream.heartbeats += 1
                        tally.heartbeats += 1
                    continue
                end = frame.find(b",", at)
                if end < 0:  # "s0" is the last key
                    end = frame.find(b"}", at)
                s0 = float(frame[at + 5 : end])
                stream.events += 1
                tally.deliveries += 1
                tally.latencies.append(now - s0)
                if s0 < tally.min_s0:
                    tally.min_s0 = s0
                if not tally.first_recv:
                    tally.first_recv = now
                tally.last_recv = now

    def _finish_connect(self, fd: int, stream: Stream, mask: int) -> None:
        err = stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err or mask & (select.EPOLLERR | select.EPOLLHUP):
            self._lost(fd, stream)
            return
        request = f"GET {stream.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n"
        stream.sock.send(request.encode())
        stream.connecting = False
        self.epoll.modify(fd, select.EPOLLIN)

    def _lost(self, fd: int, stream: Stream) -> None:
        if not stream.connected:
            self.failed += 1
            self.refused[stream.status] += 1
            self.settled += 1
        self._drop(fd, stream, reset=False)

    def _read_control(self, fd: int, control: Control) -> None:
        try:
            data = control.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            control.raw += data
            return
        with contextlib.suppress(KeyError, OSError):
            self.epoll.unregister(fd)
        control.sock.close()
        control.done = True
        self.controls.pop(fd, None)

    def close(self) -> None:
        self.close_streams()
        for fd, control in list(self.controls.items()):
            with contextlib.suppress(OSError):
                self.epoll.unregister(fd)
            control.sock.close()
        self.controls.clear()
        self.epoll.close()


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
