"""The connections of one app in this process, routed by session id.

Blinker carries each broadcast to :meth:`Registry.deliver`, one long-lived
receiver per app; the registry's own dict finds the session's connections.
Delivery appends a reference to a bounded list and either hands the
connection to the direct writer (:mod:`._direct`: an idle stream under
gunicorn's gevent worker) or wakes its stream. It never blocks.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import select
import socket
import sys
import threading
from typing import Any

from ._clock import CLOCK
from ._config import Config
from ._counters import Counters
from ._direct import Flusher, chunk, hub_loop, send_now
from ._events import Event, EventKey, EventRecord, heartbeat_frame

# The thread that runs gevent's hub (the main thread of a gunicorn gevent
# worker, where every direct-capable stream runs): only a broadcast made
# there may write directly.
_native_thread = threading.get_native_id


class LimitExceeded(Exception):
    """A connection limit is reached; the request is answered with 429."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(f"the limit of {limit} connections per {scope} is reached")
        self.scope = scope
        self.limit = limit


class Connection:
    """One open stream: its pending events and the means to wake it.

    :attr:`pending` holds at most ``queue_size`` events, as records (see
    :data:`~._events.EventRecord`). When a broadcast finds
    it full the connection gets no more references and :attr:`lagging` counts
    the events it missed: if it is waiting to be scheduled it catches up from
    history when it runs; if its socket is not draining it is disconnected.
    A lagging connection is given no more events until it has caught up, so
    that what it holds is always an unbroken run after its cursor.

    :attr:`cursor` is the id of the last event written to the client, by its
    stream or directly; :attr:`last_output` when the last byte was written
    (``time.monotonic()``), for the heartbeat clock. :attr:`idle` is True
    while the stream is parked in its wait: only then may anything but the
    stream write to :attr:`out`, the socket of a direct-capable connection.
    """

    __slots__ = (
        "closed",
        "cursor",
        "deadline",
        "draining",
        "ended",
        "expired",
        "flushing",
        "heartbeat_due",
        "idle",
        "lagging",
        "last_output",
        "limit_key",
        "out",
        "parked",
        "pending",
        "resuming",
        "session_id",
        "socket",
        "unsent",
        "user_key",
        "wakeup",
        "woken",
        "writing",
    )

    def __init__(
        self,
        session_id: str,
        user_key: str | None,
        sock: Any,
        limit_key: str | None = None,
        out: Any = None,
    ) -> None:
        self.session_id = session_id
        self.user_key = user_key
        self.limit_key = limit_key
        self.socket = sock
        self.out = out
        self.pending: list[EventRecord] = []
        # How the stream waits: a direct-capable one (gevent) parks its
        # greenlet (see _direct.park), any other waits on an event.
        self.woken = False
        self.wakeup = threading.Event() if out is None else None
        self.parked: Any = None
        self.resuming = False
        self.lagging = 0
        self.writing = False
        self.closed = False
        self.draining = False
        self.idle = False
        self.flushing = False
        self.heartbeat_due = False
        self.expired = False
        self.ended = False
        self.cursor: EventKey | None = None
        self.unsent = b""
        self.last_output = 0.0
        self.deadline = math.inf

    def wake(self) -> None:
        """Have the stream look at what changed (events, an end, a heartbeat)."""
        self.woken = True
        if self.wakeup is not None:
            self.wakeup.set()
        elif self.parked is not None and not self.resuming:
            self.resuming = True
            hub_loop().run_callback(self.resume)

    def resume(self) -> None:
        """In gevent's hub: switch to the parked stream."""
        parked = self.parked
        if parked is not None:
            parked.switch()

    def hang_up(self) -> None:
        """End the stream at its next turn (the client went away)."""
        self.closed = True
        self.wake()

    def disconnect(self) -> None:
        """Cut a client that stopped reading: its blocked write fails, the stream ends."""
        self.hang_up()
        if self.socket is not None:
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_RDWR)


class Registry:
    """All open connections of one app in this process, with their limits."""

    def __init__(self, config: Config, counters: Counters | None = None) -> None:
        self._config = config
        self._sessions: dict[str, dict[Connection, None]] = {}
        self._users: dict[str, int] = {}
        self._count = 0
        self.dropped = 0
        self.counters = counters
        # Guards the dicts above and every Connection.pending; held only for
        # dict operations, never while blocking, so it costs nothing under gevent.
        self.lock = threading.Lock()
        self._flusher = Flusher(self)
        self._heartbeat = (0.0, b"")
        self._hub_thread = 0

    @property
    def retry_after(self) -> int:
        """Seconds a refused client should wait: the stream's retry, at least 1."""
        return max(1, math.ceil(self._config.retry_ms / 1000))

    def open(
        self,
        session_id: str,
        user_key: str | None,
        sock: Any = None,
        *,
        limit_key: str | None = None,
        user_limit: int | None = None,
        out: Any = None,
    ) -> Connection:
        """Register a connection so it receives the session's live events from now on.

        :param user_key: who connects, as the signals report it.
        :param out: the socket broadcasts may write to directly while the
            stream is idle (see :func:`._direct.direct_socket`); None: never.
        :param limit_key: the slot the connection counts under for per-user
            limits (see :func:`limit_key`); None counts it under none.
        :param user_limit: how many connections that key may hold; None: no limit.
        :raises LimitExceeded: a per-process, per-session or per-user limit is reached.
        """
        config = self._config
        with self.lock:
            conns = self._sessions.get(session_id)
            if self._count >= config.max_connections:
                raise LimitExceeded("process", config.max_connections)
            per_session = config.max_connections_per_session
            if per_session is not None and conns is not None and len(conns) >= per_session:
                raise LimitExceeded("session", per_session)
            if limit_key is not None:
                held = self._users.get(limit_key, 0)
                if user_limit is not None and held >= user_limit:
                    raise LimitExceeded("user", user_limit)
                self._users[limit_key] = held + 1
            conn = Connection(session_id, user_key, sock, limit_key, out)
            if out is not None:
                self._hub_thread = _native_thread()
            if conns is None:
                conns = self._sessions[session_id] = {}
            conns[conn] = None
            self._count += 1
        return conn

    def close(self, conn: Connection) -> bool:
        """Unregister ``conn`` and free its slots; False if it was closed already."""
        with self.lock:
            conns = self._sessions.get(conn.session_id)
            if conns is None or conns.pop(conn, False) is False:
                return False
            if not conns:
                del self._sessions[conn.session_id]
            self._count -= 1
            key = conn.limit_key
            if key is not None:
                left = self._users[key] - 1
                if left:
                    self._users[key] = left
                else:
                    del self._users[key]
        conn.pending = []
        conn.closed = True
        # The heartbeat clock may hold the connection until its next turn
        # at it: it keeps nothing of the client's but the object itself.
        conn.out = conn.socket = None
        CLOCK.discard()
        return True

    def take(self, conn: Connection) -> tuple[list[EventRecord], bool]:
        """Hand the connection everything delivered to it, and whether it lagged."""
        with self.lock:
            events, lagging = conn.pending, conn.lagging > 0
            conn.pending, conn.lagging = [], 0
            conn.woken = False
            if conn.wakeup is not None:
                conn.wakeup.clear()
        return events, lagging

    def deliver(self, sender: object, *, session_id: str, event: Event) -> int:
        """Blinker receiver: queue ``event`` on each connection of its session.

        :returns: how many connections it reached.
        """
        limit = self._config.queue_size
        in_hub = _native_thread() == self._hub_thread
        direct = self._flusher.queue
        queued = len(direct)
        with self.lock:
            conns = self._sessions.get(session_id)
            if not conns:
                return 0
            record = event.record
            for conn in conns:
                pending = conn.pending
                if not conn.lagging and len(pending) < limit:
                    pending.append(record)
                    if conn.flushing:
                        continue  # the direct writer has it already
                    if conn.idle and conn.out is not None and in_hub:
                        conn.flushing = True
                        direct.append(conn)
                    else:
                        conn.wake()
                    continue
                conn.lagging += 1
                if conn.lagging == 1:
                    conn.wake()
                # A stream blocked in a write was maybe only not scheduled since
                # its socket drained (a burst from one view holds the CPU): ask
                # the socket, when the queue overflows and at each queue's worth
                # more, and cut the client only if it is really not reading.
                if (
                    conn.writing
                    and not conn.closed
                    and (conn.lagging - 1) % limit == 0
                    and _send_buffer_full(conn.socket)
                ):
                    self.dropped += 1
                    conn.disconnect()
            if not queued and direct:
                self._flusher.schedule()
            return len(conns)

    def drain(self) -> None:
        """Tell every open stream to end at its next turn, asking its client to
        come back later (the server is shutting down). Called again, it cuts
        the streams still stuck in a write since the last call: their clients
        are not reading, and the worker must not wait for them."""
        with self.lock:
            for conns in self._sessions.values():
                for conn in conns:
                    if not conn.draining:
                        conn.draining = True
                        conn.wake()
                    elif conn.writing and not conn.closed:
                        conn.disconnect()

    def catch_up(self, session_id: str) -> None:
        """Make every connection of the session read history from its cursor
        before it takes live events again: some may have been lost on the way."""
        with self.lock:
            for conn in self._sessions.get(session_id, ()):
                conn.lagging += 1
                conn.wake()

    def lag(self, conn: Connection) -> None:
        """Mark ``conn`` as behind without waking it: its catch-up failed and
        is tried again later; live events meanwhile wait in history."""
        with self.lock:
            conn.lagging = max(conn.lagging, 1)

    def beat(self, entries: list[Any], now: float, again: list[Any]) -> None:
        """The heartbeat clock's turn at connections of this registry: end
        those past their deadline, write a heartbeat to those silent for the
        interval.

        ``entries`` are the clock's ``(when, order, registry, conn)``; those
        to look at again go to ``again``, with their new time.
        """
        interval = self._config.heartbeat_interval
        direct = _native_thread() == self._hub_thread
        with self.lock:
            for entry in entries:
                conn = entry[3]
                if conn.closed or conn.ended:
                    continue
                if now >= conn.deadline:
                    conn.expired = True
                    conn.wake()
                    continue
                due = conn.last_output + interval
                if now >= due:
                    due = now + interval
                    if not conn.idle:
                        pass  # the stream is writing, or is about to
                    elif (
                        direct
                        and conn.out is not None
                        and not (conn.pending or conn.unsent or conn.lagging)
                    ):
                        if not send_now(conn, self._heartbeat_chunk(now), now):
                            conn.wake()
                    else:
                        conn.heartbeat_due = True
                        conn.wake()
                again.append((min(due, conn.deadline), entry[1], self, conn))

    def _heartbeat_chunk(self, now: float) -> bytes:
        """The framed heartbeat, built once per turn of the clock (its
        timestamp says when the turn was)."""
        built, frame = self._heartbeat
        if now - built > 0.05:
            frame = chunk(heartbeat_frame(self._config.heartbeat_format))
            self._heartbeat = (now, frame)
        return frame

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {
                "connections": self._count,
                "sessions": len(self._sessions),
                "users": len(self._users),
                "dropped": self.dropped,
            }


def limit_key(user: str | None, address: str | None) -> str | None:
    """The slot a connection counts under for per-user limits.

    Users named by the identify hook and client addresses live in separate
    namespaces, so that a user id that looks like an address never shares an
    address's slots. IPv6 clients are counted per /64 network: one host
    usually holds a whole /64 and could otherwise take a fresh address per
    stream. None when there is neither (a Unix socket, say).
    """
    if user is not None:
        return "user:" + user
    if not address:
        return None
    try:
        # The common case, fast: an IPv4 address in its one canonical form.
        if socket.inet_ntoa(socket.inet_aton(address)) == address:
            return "addr:" + address
    except OSError:
        pass
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return "addr:" + address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"addr:{ip.ipv4_mapped}"
        return f"addr:{ipaddress.IPv6Address(int(ip) >> 64 << 64)}/64"
    return f"addr:{ip}"


def _send_buffer_full(sock: Any) -> bool:
    """Whether a write to ``sock`` would block right now; never blocks itself.

    gevent's cooperative ``poll`` answers only after a turn of its loop, so
    this asks the operating system's. Without a socket to ask (or a ``poll``)
    it assumes the worst.
    """
    if sock is None:
        return True
    monkey = sys.modules.get("gevent.monkey")  # imported if gevent patched anything
    try:
        poll = monkey.get_original("select", "poll") if monkey else select.poll
    except AttributeError:
        return True  # no poll on this platform
    try:
        poller = poll()
        poller.register(sock.fileno(), select.POLLOUT)
        return not any(events & select.POLLOUT for _, events in poller.poll(0))
    except (OSError, ValueError):
        return True
