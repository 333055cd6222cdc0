"""The body of one stream response: replay, then live events and heartbeats.

The connection is registered (subscribed) before the view reads history, so an
event published in between is both in the replay and in the connection's
pending list; the stream writes each id once, in order, by keeping a cursor:
the id of the last event written, after which the client needs everything.

A live event whose ``prev`` is newer than the cursor shows that something was
lost on the way (a shared bus that lost its connection); a connection that
fell behind is ``lagging``. Either way the stream reads history from its
cursor. When the backend cannot answer, the stream keeps its client with
heartbeats and tries again later: every event is stored before it is
delivered, so what the client is owed is still there (or it gets ``reset``).
"""

from __future__ import annotations

import logging
import math
import random
import time

from ._backend import BackendUnavailable
from ._clock import CLOCK
from ._direct import park
from ._events import (
    KEY,
    PREV,
    RESET_FRAME,
    TERMINAL,
    Event,
    EventKey,
    EventRecord,
    connected_frame,
    heartbeat_frame,
)
from ._registry import Connection
from ._state import State
from ._watcher import WATCHER
from .signals import connection_closed

_STREAM_JITTER = 0.1
# A draining worker asks each client to come back after its retry time plus
# up to this much more (at least a second), so they do not all come at once.
_DRAIN_SPREAD = 1.0
# Seconds between catch-up attempts while the backend does not answer: doubled
# at each failure up to the maximum, with jitter, so streams do not retry together.
_RETRY_FIRST = 0.5
_RETRY_MAX = 8.0

logger = logging.getLogger("flask_sse_sessions")


class Stream:
    """The WSGI response iterable of one connection: its own iterator, each
    ``next()`` the next chunk to write.

    Closing it, which every WSGI server does, also when the body never
    started, unregisters the connection and frees its limit slots.

    An iterator rather than a generator: a stream parks in its wait for most
    of its life, and what it keeps meanwhile (a generator's frame, the saved
    stack of a deeper call chain) is memory of every idle connection.
    """

    __slots__ = (
        "_conn",
        "_live",
        "_live_ms",
        "_opened",
        "_replay",
        "_reset",
        "_retry_at",
        "_retry_delay",
        "_started",
        "_state",
    )

    def __init__(
        self,
        state: State,
        conn: Connection,
        *,
        replay: list[EventRecord],
        reset: bool,
    ) -> None:
        self._state = state
        self._conn = conn
        self._replay = replay
        self._reset = reset
        self._opened = time.monotonic()
        # Live events in the chunk being written: how many, and when the
        # oldest was published (epoch milliseconds), for the counters.
        self._live = 0
        self._live_ms = 0
        self._retry_at = math.inf
        self._retry_delay = _RETRY_FIRST
        self._started = False

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> bytes:
        conn = self._conn
        # The server wrote the previous chunk (if any) before asking again.
        conn.writing = False
        chunk = self._next_chunk() if self._started else self._first_chunk()
        if chunk is None:
            # The server writes the last chunk after this; on a kept-alive
            # connection the client's next request may follow at once, and
            # it is the server's to read: stop watching the socket first.
            WATCHER.unwatch(conn)
            conn.ended = True
            raise StopIteration
        conn.last_output = time.monotonic()
        if self._live:
            self._state.counters.wrote(self._live, self._live_ms)
            self._live = 0
        # While the server writes, a full pending list means the client is
        # not reading: Registry.deliver then disconnects instead of waiting.
        conn.writing = True
        return chunk

    def close(self) -> None:
        conn, state = self._conn, self._state
        conn.ended = True
        conn.writing = False
        WATCHER.unwatch(conn)
        if state.close_connection(conn):
            state.counters.closed += 1
            logger.debug(
                "stream closed: session %r, user %r, %.1f s",
                conn.session_id,
                conn.user_key,
                time.monotonic() - self._opened,
            )
            connection_closed.send(state.app, session_id=conn.session_id, user_key=conn.user_key)

    def _first_chunk(self) -> bytes:
        """The ``connected`` event, then what the client missed; the stream
        joins the heartbeat clock."""
        self._started = True
        conn, state = self._conn, self._state
        frames = [connected_frame(conn.session_id, state.config.retry_ms)]
        if self._reset:
            frames.append(RESET_FRAME)
        self._add(frames, self._replay)
        self._replay = []
        CLOCK.add(
            state.registry,
            conn,
            min(time.monotonic() + state.config.heartbeat_interval, conn.deadline),
        )
        return b"".join(frames)

    def _next_chunk(self) -> bytes | None:
        """Wait until there is something to write; None when the stream ends.

        While it waits the stream is *idle*: broadcasts may write to its
        socket directly, and the heartbeat clock writes its heartbeats. What
        a direct write left over is written first, before anything else.
        """
        conn, registry = self._conn, self._state.registry
        while not conn.closed:
            if conn.unsent and not self._send_unsent():
                return None
            if conn.ended or conn.expired:
                return None
            if conn.draining:
                return self._drained()
            # A stream whose catch-up failed lags until it tries again.
            retry_in = None if self._retry_at == math.inf else self._retry_at - time.monotonic()
            lagging = conn.lagging and (retry_in is None or retry_in <= 0)
            if not (conn.pending or conn.heartbeat_due or lagging):
                conn.idle = True
                if conn.wakeup is not None:
                    conn.wakeup.wait(retry_in)
                else:
                    park(conn, retry_in)
                conn.idle = False
                if conn.unsent or conn.closed:
                    continue
            events, lagging = registry.take(conn)
            frames: list[bytes] = []
            gap = self._add(frames, events, live=True)
            if (lagging or gap) and not conn.ended:
                # Woken too late to keep up from memory, or something was lost
                # on the way: the rest is in history.
                self._catch_up(frames)
            if frames:
                conn.heartbeat_due = False
                return b"".join(frames)
            if conn.heartbeat_due:
                conn.heartbeat_due = False
                return heartbeat_frame(self._state.config.heartbeat_format)
        return None

    def _send_unsent(self) -> bool:
        """Write the rest of a direct write, on the same socket; False if the
        client is gone."""
        conn = self._conn
        data, conn.unsent = conn.unsent, b""
        conn.writing = True
        try:
            conn.out.sendall(data)
        except OSError:
            conn.hang_up()
            return False
        finally:
            conn.writing = False
        conn.last_output = time.monotonic()
        return True

    def _drained(self) -> bytes:
        """The last chunk of a stream whose worker stops: a ``retry:`` that
        spreads the clients' reconnections over a while. The stream ends
        after it; the client resumes elsewhere with its Last-Event-ID."""
        self._conn.ended = True
        retry_ms = self._state.config.retry_ms
        delay = retry_ms + random.randint(0, max(retry_ms, int(_DRAIN_SPREAD * 1000)))
        return b"retry: %d\n\n" % delay

    def _catch_up(self, frames: list[bytes]) -> None:
        """Append what history holds after the cursor, or ``reset`` and the latest
        event when it no longer holds all of it; if the backend does not answer,
        try again later."""
        conn, backend = self._conn, self._state.backend
        try:
            missed = backend.history(conn.session_id, conn.cursor)
            reset = missed is None
            if missed is None:
                latest = backend.latest(conn.session_id)
                missed = [latest] if latest is not None else []
        except BackendUnavailable:
            self._state.registry.lag(conn)
            self._retry_at = time.monotonic() + self._retry_delay * random.uniform(0.5, 1)
            self._retry_delay = min(self._retry_delay * 2, _RETRY_MAX)
            return
        self._retry_at, self._retry_delay = math.inf, _RETRY_FIRST
        if reset:
            frames.append(RESET_FRAME)
        self._add(frames, [event.record for event in missed])

    def _add(self, frames: list[bytes], events: list[EventRecord], *, live: bool = False) -> bool:
        """Append the frames of ``events`` not written yet, up to a terminal one.

        Live events stop at one whose previous event the stream has not
        written: the run is broken, and True says so.
        """
        conn = self._conn
        cursor = conn.cursor
        for key, type, _, prev, frame in events:
            if conn.ended:
                break
            if cursor is None or key > cursor:
                if live:
                    if prev is not None and (cursor is None or prev > cursor):
                        conn.cursor = cursor
                        return True
                    if not self._live:
                        self._live_ms = key[0]
                    self._live += 1
                frames.append(frame)
                cursor = key
                conn.ended = type == TERMINAL
        conn.cursor = cursor
        return False


def open_stream(state: State, conn: Connection, after: EventKey | None, expires: float) -> Stream:
    """Read what the client missed, now that live events are already queued for it."""
    replay, reset, cursor = _replay(state, conn, after)
    conn.cursor = cursor
    conn.deadline = time.monotonic() + _seconds_left(state.config.max_stream_seconds, expires)
    return Stream(state, conn, replay=[event.record for event in replay], reset=reset)


def _replay(
    state: State, conn: Connection, after: EventKey | None
) -> tuple[list[Event], bool, EventKey | None]:
    """What a new stream starts with: (events, whether a reset precedes them, cursor).

    The cursor is the id after which the client needs every event; the
    stream skips any queued live event at or before it.
    """
    backend, mode, session_id = state.backend, state.config.replay_on_connect, conn.session_id
    if after is not None:
        missed = backend.history(session_id, after)
        if missed is not None:
            return missed, False, after
    elif mode == "all":
        return backend.history(session_id, None) or [], False, None
    reset = after is not None
    latest = backend.latest(session_id)
    if latest is None:
        return [], reset, None
    with state.registry.lock:
        first_live = conn.pending[0] if conn.pending else None
    if first_live is not None and first_live[KEY] <= latest.key:
        # The latest event came while it was read, after the connection was
        # subscribed: the queued live events are the snapshot, all of them.
        return [], reset, first_live[PREV]
    if mode == "none" and not reset and not latest.terminal:
        # A session that is over still says so: its stream must end.
        return [], False, latest.key
    return [latest], reset, None


def _seconds_left(max_stream_seconds: float | None, expires: float) -> float:
    """How long the stream may last: its token's life, and the configured maximum
    less up to 10% so that streams opened together do not all reconnect together."""
    left = expires - time.time()
    if max_stream_seconds is not None:
        left = min(left, max_stream_seconds * (1 - random.random() * _STREAM_JITTER))
    return left
