"""A raw HTTP/1.1 client over a plain socket, for byte-exact stream checks.

It sends exactly the request it is given, decodes chunked bodies itself, and
keeps every body byte, so tests can compare what went over the wire.
"""

from __future__ import annotations

import contextlib
import socket
import time

from flask_sse_sessions._wire import Parser, ServerSentEvent


class RawStream:
    """One request; the response head is read at once, the body on demand."""

    def __init__(
        self,
        port: int | str,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        method: str = "GET",
        timeout: float = 5.0,
        request: bytes | None = None,
        body: bytes = b"",
        receive_buffer: int | None = None,
        read_head: bool = True,
    ) -> None:
        """``port``: a TCP port on 127.0.0.1, or the path of a Unix socket.
        ``request``: bytes sent as they are instead of the request built from
        ``method``, ``path``, ``headers`` and ``body`` (a server may refuse it
        and answer before it was all sent). ``receive_buffer``: the socket's
        SO_RCVBUF (a small one makes a client that stops reading stall soon).
        ``read_head``: False to leave the answer unread until :meth:`response`.
        """
        if isinstance(port, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = port
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = ("127.0.0.1", port)
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.host = "localhost" if isinstance(port, str) else f"127.0.0.1:{port}"
        self._raw = b""
        self.send_request(method, path, headers, body, raw=request)
        if read_head:
            self.response(timeout)

    def send_request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        *,
        raw: bytes | None = None,
    ) -> None:
        """Send a request on this connection (kept alive); its answer comes
        after the current one, with :meth:`response`."""
        if raw is None:
            lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
            lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
            if body:
                lines.append(f"Content-Length: {len(body)}")
            raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(raw)

    def response(self, timeout: float = 5.0) -> RawStream:
        """Read the head of the next answer on this connection (after the
        current one ended); its body is then read on demand as usual."""
        self.body = bytearray()  # grows in place: a stream may carry megabytes
        self.ended = False
        self.complete = False  # the whole answer came (not cut by a closed connection)
        self._parser = Parser()
        self._events: list[ServerSentEvent] = []
        head = self._read_head(time.monotonic() + timeout)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split(" ")[1])
        self.header_list = [tuple(line.split(": ", 1)) for line in header_lines]
        self.headers = {name.lower(): value for name, value in self.header_list}
        self._chunked = self.headers.get("transfer-encoding") == "chunked"
        self._length = int(self.headers.get("content-length", -1))
        self._sse = self.headers.get("content-type", "").startswith("text/event-stream")
        self._decode()
        return self

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> RawStream:
        """Another request on this kept-alive connection, once the current
        answer ended; its answer's head is read."""
        assert self.ended, "read the current answer to its end first"
        self.send_request(method, path, headers, body)
        return self.response()

    def _fill(self, deadline: float) -> bool:
        """Receive more bytes; False when the peer closed or the deadline passed."""
        remaining = deadline - time.monotonic()
        return remaining > 0 and self._receive(remaining)

    def _fill_now(self) -> bool:
        """Receive what the socket already holds, without waiting."""
        return self._receive(0)

    def _receive(self, timeout: float) -> bool:
        """Receive more bytes, waiting at most ``timeout`` seconds (0: only what
        has arrived); False when nothing came or the peer closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.ended = True
            return False
        self._raw += data
        return True

    def _read_head(self, deadline: float) -> bytes:
        while b"\r\n\r\n" not in self._raw:
            if not self._fill(deadline):
                raise TimeoutError(f"no response head, got {self._raw!r}")
        head, self._raw = self._raw.split(b"\r\n\r\n", 1)
        return head

    def _decode(self) -> None:
        """Move complete body bytes from the raw buffer to :attr:`body`."""
        new = b""
        if not self._chunked:
            if self._length < 0:  # the body ends when the server closes
                new, self._raw = self._raw, b""
            else:
                need = self._length - len(self.body)
                new, self._raw = self._raw[:need], self._raw[need:]
                if len(new) == need:
                    self.ended = self.complete = True
        else:
            while b"\r\n" in self._raw:
                size_line, rest = self._raw.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if len(rest) < size + 2:
                    break
                if size == 0:
                    if len(rest) < 2:
                        break  # its closing CRLF is still to come
                    self.ended = self.complete = True
                    self._raw = rest[2:]  # what follows belongs to the next answer
                    break
                new += rest[:size]
                self._raw = rest[size + 2 :]
        if new:
            self.body += new
            if self._sse:
                self._events.extend(self._parser.feed(new.decode("utf-8")))

    def read_until(self, marker: bytes, timeout: float = 5.0, count: int = 1) -> bytes:
        """Read until the body holds ``marker`` ``count`` times; return the body."""
        deadline = time.monotonic() + timeout
        while self.body.count(marker) < count:
            if self.ended or not self._fill(deadline):
                raise TimeoutError(f"{marker!r} x{count} not in {self.body[-2000:]!r}")
            self._decode()
        return bytes(self.body)

    def read_to_end(self, timeout: float = 5.0) -> bytes:
        """Read until the server ends the response."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            if not self._fill(deadline) and not self.ended:
                raise TimeoutError(f"the response did not end: {self.body[-2000:]!r}")
            self._decode()
        return bytes(self.body)

    def events(self, count: int, timeout: float = 5.0) -> list[ServerSentEvent]:
        """The next ``count`` events (blocking until they arrive)."""
        deadline = time.monotonic() + timeout
        while len(self._events) < count:
            if self.ended or not self._fill(deadline):
                raise TimeoutError(f"{len(self._events)} of {count} events: {self.body[-2000:]!r}")
            self._decode()
        taken, self._events = self._events[:count], self._events[count:]
        return taken

    def pending_events(self, wait: float = 0.0) -> list[ServerSentEvent]:
        """Events that arrived so far, or within ``wait`` seconds, without
        blocking longer: what the socket holds is always read."""
        deadline = time.monotonic() + wait
        while (
            not self.ended
            and self.sock.fileno() >= 0
            and (self._fill(deadline) or self._fill_now())
        ):
            self._decode()
        taken, self._events = self._events, []
        return taken

    def send(self, data: bytes) -> None:
        """Send more bytes after the request (a client should not)."""
        self.sock.sendall(data)

    def json(self) -> object:
        """The body of a non-stream response, as JSON."""
        import json

        return json.loads(self.read_to_end())

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_stream(raw: bytes) -> tuple[list[ServerSentEvent], bool]:
    """The events of a raw chunked stream answer (head included) as far as
    its chunks are complete, and whether it ended with its last chunk."""
    head, found, body = raw.partition(b"\r\n\r\n")
    if not found:
        return [], False  # not even the head yet
    assert head.startswith(b"HTTP/1.1 200 "), head[:200]
    decoded = bytearray()
    offset, ended = 0, False
    while (line_end := body.find(b"\r\n", offset)) >= 0:
        size = int(body[offset:line_end].split(b";")[0], 16)
        start = line_end + 2
        if size == 0:
            ended = True
            break
        if len(body) < start + size + 2:
            break  # a chunk cut short
        decoded += body[start : start + size]
        offset = start + size + 2
    return list(Parser().feed(decoded.decode("utf-8", errors="ignore"))), ended
