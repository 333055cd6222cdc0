"""Direct delivery: a broadcast writes to idle stream sockets itself.

A stream that waits for events costs a greenlet switch for every event it is
woken for: in, take, frame, write through the server's response, out. Under
gunicorn's gevent worker the broadcast can instead write the event's
pre-framed bytes to the socket of every *idle* connection (its stream parked
in its wait, nothing queued, its response headers long sent) with one
non-blocking ``send``: what the raw floor does. The bytes are exactly those
gunicorn would write for the same chunk: ``"%X\\r\\n" % len(body) + body +
"\\r\\n"``.

The writes are deferred to one callback per turn of gevent's loop: a view that
publishes twenty events before it yields gets them written as one chunk per
connection, as a woken stream would have written them. The callback runs in
gevent's hub, where nothing may block: every write is non-blocking, and the
registry's lock is only tried.

When a socket takes only part of a chunk, or none of it, the remainder is the
connection's :attr:`~._registry.Connection.unsent` and its stream is woken: it
writes the remainder on the same raw socket (a cooperative ``sendall``) before
any other byte, and a client that stopped reading is noticed there as before.
Events that need the stream's judgement (a terminal event, a gap in the ids,
a connection that lagged) are left queued for it, and it is woken.

Only gunicorn's own gevent worker, over plain TCP, for ``GET`` over HTTP/1.1,
gets direct writes: it is the one server whose framing is known, whose socket
is a gevent socket every greenlet of the process shares, and where the
publisher and the stream can never run at once. Anything else (threads, TLS,
HTTP/1.0 or HEAD, gevent's pywsgi, werkzeug) keeps the wake-up path.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from ._events import FRAME, KEY, PREV, TERMINAL, EventKey, EventRecord

if TYPE_CHECKING:
    from ._registry import Connection, Registry

_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)


def chunk(body: bytes) -> bytes:
    """``body`` as one HTTP/1.1 chunk, byte for byte as gunicorn frames it."""
    return b"%X\r\n%s\r\n" % (len(body), body)


def direct_socket(environ: dict[str, Any]) -> Any | None:
    """The socket a broadcast may write this request's stream to, or None.

    Direct writes need gunicorn's gevent worker (its response path is the
    one framed by :func:`chunk`), a plain TCP socket (no TLS), and a chunked
    response: ``GET`` over HTTP/1.1.
    """
    sock = environ.get("gunicorn.socket")
    if sock is None or environ.get("REQUEST_METHOD") != "GET":
        return None
    if environ.get("SERVER_PROTOCOL") != "HTTP/1.1" or not _gevent_worker():
        return None
    gevent_socket = sys.modules.get("gevent.socket")
    # Exactly gevent's socket class: its subclasses (gevent's SSLSocket) encrypt.
    if gevent_socket is None or type(sock) is not gevent_socket.socket:
        return None
    raw = getattr(sock, "_sock", None)
    if raw is None or raw.gettimeout() != 0.0:
        return None  # not the non-blocking OS socket gevent keeps under its own
    return sock


_worker_pid = 0
_worker_ok = False


def _gevent_worker() -> bool:
    """Whether this process is a gunicorn gevent worker speaking plain HTTP."""
    global _worker_pid, _worker_ok
    pid = os.getpid()
    if _worker_pid != pid:
        from ._server import gunicorn_process

        worker = gunicorn_process()
        _worker_ok = (
            worker is not None
            and type(worker).__module__.endswith(".ggevent")
            and getattr(worker.cfg, "protocol", "http") == "http"
            and not worker.cfg.is_ssl
        )
        _worker_pid = pid
    return _worker_ok


_loop: Any = None
_loop_pid = 0


def hub_loop() -> Any:
    """gevent's loop in this process (direct writes only happen in its thread)."""
    global _loop, _loop_pid
    if _loop_pid != os.getpid():
        import gevent

        _loop = gevent.get_hub().loop
        _loop_pid = os.getpid()
    return _loop


def park(conn: Connection, timeout: float | None) -> None:
    """Wait, as a greenlet, until ``conn`` is woken (or ``timeout`` passes).

    The greenlet switches to the hub itself instead of waiting on an event:
    a parked stream keeps less of its stack, and no event object. Only for
    direct-capable connections, whose streams are greenlets of gevent's hub.
    """
    if conn.woken:
        return
    import gevent

    hub = gevent.get_hub()
    timer = None
    if timeout is not None:
        timer = hub.loop.timer(max(timeout, 0.0))
        timer.start(conn.resume)
    conn.parked = gevent.getcurrent()
    try:
        hub.switch()
    finally:
        conn.parked = None
        conn.resuming = False
        if timer is not None:
            timer.close()


def send_now(conn: Connection, data: bytes, now: float) -> bool:
    """Write ``data`` (framed) to ``conn``'s socket without blocking.

    What the socket does not take becomes ``conn.unsent``, for the stream to
    write first. False when the stream must be woken: a remainder is left, or
    the socket failed (the client is gone: the stream is hung up).
    """
    try:
        sent = conn.out._sock.send(data, _SEND_FLAGS)
    except BlockingIOError:
        sent = 0
    except OSError:
        conn.hang_up()
        return False
    conn.last_output = now
    if sent == len(data):
        return True
    conn.unsent = data[sent:]
    return False


class Flusher:
    """The connections of one registry with events for a direct write, and the
    one callback per turn of gevent's loop that writes them."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        # The connections to write at the end of this turn of the loop; the
        # registry appends to it (with its lock held, in the hub's thread)
        # and calls schedule() when it was empty.
        self.queue: list[Connection] = []

    def schedule(self) -> None:
        hub_loop().run_callback(self._flush)

    def _flush(self) -> None:
        registry = self._registry
        # In the hub: the lock is free unless a thread outside gevent holds it.
        if not registry.lock.acquire(blocking=False):
            self.schedule()
            return
        try:
            conns, self.queue = self.queue, []
            now = time.monotonic()
            # The connections of one session usually get the same run of
            # events: it is framed once, and counted once per run.
            runs: dict[tuple[str, EventKey, EventKey], _Run] = {}
            # The common case, short: the connections of a session got the
            # same unbroken run of events, the first right after their cursor.
            first: EventRecord | None = None
            last: EventRecord | None = None
            run: _Run | None = None
            for conn in conns:
                conn.flushing = False
                events = conn.pending
                if events and _may_write(conn):
                    if events[0] is not first or events[-1] is not last:
                        first, last = events[0], events[-1]
                        run = _run(runs, conn.session_id, events) if _unbroken(events) else None
                    if (
                        run is not None
                        and run.events == len(events)
                        and first[PREV] is not None
                        and first[PREV] == conn.cursor
                    ):
                        events.clear()
                        conn.cursor = last[KEY]
                        run.writes += 1
                        if not send_now(conn, run.chunk, now):
                            conn.wake()
                        continue
                if not _write_queued(conn, now, runs):
                    conn.wake()
        finally:
            registry.lock.release()
        counters = registry.counters
        if counters is not None:
            for run in runs.values():
                counters.wrote(run.events, run.published_ms, writes=run.writes)
            counters.direct_writes += sum(run.writes for run in runs.values())


class _Run:
    """A run of events framed as one chunk, and how many sockets it went to."""

    __slots__ = ("chunk", "events", "published_ms", "writes")

    def __init__(self, events: list[EventRecord]) -> None:
        self.chunk = chunk(b"".join([event[FRAME] for event in events]))
        self.events = len(events)
        self.published_ms = events[0][KEY][0]
        self.writes = 0


def _may_write(conn: Connection) -> bool:
    """Whether the direct writer may write to ``conn``: its stream is parked,
    and has nothing of its own to do first (a remainder to finish, history to
    read, an end to write)."""
    return conn.idle and not (conn.lagging or conn.unsent or conn.closed or conn.draining)


def _write_queued(
    conn: Connection, now: float, runs: dict[tuple[str, EventKey, EventKey], _Run]
) -> bool:
    """Write what is queued for an idle connection; False if its stream must run."""
    events = conn.pending
    if not events:
        return True
    if not _may_write(conn):
        return False
    cursor = conn.cursor
    first = 0
    for index, (key, type, _, prev, _) in enumerate(events):
        if cursor is not None and key <= cursor:
            first = index + 1
            continue  # already written: it came with the stream's replay
        if type == TERMINAL or (prev is not None and (cursor is None or prev > cursor)):
            return False  # the stream ends there, or reads the gap from history
        cursor = key
    conn.pending = []
    if first == len(events):
        return True
    conn.cursor = cursor
    run = _run(runs, conn.session_id, events[first:])
    run.writes += 1
    return send_now(conn, run.chunk, now)


def _unbroken(events: list[EventRecord]) -> bool:
    """Whether each event follows the one before it, and none ends the stream."""
    previous = None
    for key, type, _, prev, _ in events:
        if type == TERMINAL or (previous is not None and prev != previous):
            return False
        previous = key
    return True


def _run(
    runs: dict[tuple[str, EventKey, EventKey], _Run],
    session_id: str,
    events: list[EventRecord],
) -> _Run:
    """The run of ``events`` (of ``session_id``) in this flush, framed once."""
    # Ids are per session (with Redis, two sessions may both have 1-0).
    key = (session_id, events[0][KEY], events[-1][KEY])
    run = runs.get(key)
    if run is None:
        run = runs[key] = _Run(events)
    return run
