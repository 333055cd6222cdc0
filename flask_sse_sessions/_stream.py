"""The body of one stream response: replay, then live events and heartbeats.

The connection is registered (subscribed) before the view reads history, so an
event published in between is both in the replay and in the connection's
pending list; the stream writes each id once, in order, by keeping a cursor:
the id of the last event written, after which the client needs everything.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator

from ._events import RESET_FRAME, Event, EventKey, connected_frame, heartbeat_frame, retry_frame
from ._registry import Connection
from ._state import State
from ._watcher import WATCHER
from .signals import connection_closed


class Stream:
    """The WSGI response iterable of one connection.

    Closing it, which every WSGI server does, also when the body never
    started, unregisters the connection and frees its limit slots.
    """

    def __init__(
        self,
        state: State,
        conn: Connection,
        *,
        replay: list[Event],
        reset: bool,
        cursor: EventKey | None,
        deadline: float,
    ) -> None:
        self._state = state
        self._conn = conn
        self._replay = replay
        self._reset = reset
        self._cursor = cursor
        self._deadline = deadline
        self._ended = False
        self._body: Generator[bytes, None, None] | None = None

    def __iter__(self) -> Iterator[bytes]:
        if self._body is None:
            self._body = self._run()
        return self._body

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
        conn, state = self._conn, self._state
        WATCHER.unwatch(conn)
        if state.registry.close(conn):
            connection_closed.send(state.app, session_id=conn.session_id, user_key=conn.user_key)

    def _run(self) -> Generator[bytes, None, None]:
        conn, state = self._conn, self._state
        config = state.config
        registry, backend = state.registry, state.backend
        frames = [retry_frame(config.retry_ms), connected_frame(conn.session_id)]
        if self._reset:
            frames.append(RESET_FRAME)
        self._add(frames, self._replay)
        self._replay = []
        yield from self._write(b"".join(frames))

        interval = config.heartbeat_interval
        last_output = time.monotonic()
        while not self._ended and not conn.closed:
            now = time.monotonic()
            if now >= self._deadline:
                return
            conn.wakeup.wait(min(last_output + interval, self._deadline) - now)
            events, lagging = registry.take(conn)
            frames = []
            self._add(frames, events)
            if lagging and not self._ended:
                # Woken too late to keep up from memory: the rest is in history.
                missed = backend.history(conn.session_id, self._cursor)
                if missed is None:
                    frames.append(RESET_FRAME)
                    latest = backend.latest(conn.session_id)
                    missed = [latest] if latest is not None else []
                self._add(frames, missed)
            if frames:
                yield from self._write(b"".join(frames))
                last_output = time.monotonic()
            elif time.monotonic() - last_output >= interval:
                yield from self._write(heartbeat_frame(config.heartbeat_format))
                last_output = time.monotonic()

    def _add(self, frames: list[bytes], events: list[Event]) -> None:
        """Append the frames of ``events`` not written yet, up to a terminal one."""
        cursor = self._cursor
        for event in events:
            if self._ended:
                break
            if cursor is None or event.key > cursor:
                frames.append(event.frame)
                cursor = event.key
                self._ended = event.terminal
        self._cursor = cursor

    def _write(self, chunk: bytes) -> Iterator[bytes]:
        # While the server writes, a full pending list means the client is not
        # reading: Registry.deliver then disconnects instead of waiting.
        self._conn.writing = True
        yield chunk
        self._conn.writing = False
