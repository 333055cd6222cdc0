"""The in-process backend: ids, history and delivery inside one process."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from ._backend import Backend, Deliver
from ._events import KEY, Event, EventKey, EventRecord, next_event_id


class _History:
    """The stored events of one session, as records (see
    :data:`~._events.EventRecord`): a full history of every session costs no
    time in the garbage collector's collections."""

    __slots__ = ("events", "evicted", "expires")

    def __init__(self, size: int) -> None:
        self.events: deque[EventRecord] = deque(maxlen=size)
        # The newest event the size bound pushed out: a client that has it
        # misses nothing that is not stored.
        self.evicted: EventKey | None = None
        self.expires = 0.0


class MemoryBackend(Backend):
    """History in a dict of bounded deques, oldest activity first.

    A session's history expires ``ttl`` seconds after its last event. Expired
    sessions are dropped from the front of the dict by the first publish
    after the oldest expires (and when stats are read), so the work is
    proportional to what expires and memory stays bounded by the rate of
    sessions, without a sweeper thread. At most
    ``max_sessions`` histories are kept: a new session beyond that evicts the
    one whose last event is oldest, as if its TTL had passed (a client
    resuming it gets ``reset``).

    Ids come from one sequence for the whole backend, so a session that
    expired and starts over never repeats an id a client may still hold, even
    if the wall clock stepped back.

    Each event's ``prev`` is the session's event before it, None for the first
    of a history: events of one session reach the bus in id order, so a stream
    never sees a gap here, except by falling behind (see :mod:`._registry`).

    ``clock`` gives the monotonic seconds that the TTL counts; tests pass their own.
    """

    def __init__(
        self,
        deliver: Deliver,
        size: int,
        ttl: float,
        *,
        max_sessions: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._deliver = deliver
        self._max_sessions = max_sessions
        self.evicted = 0
        self._size = size
        self._ttl = ttl
        self._clock = clock
        self._sessions: OrderedDict[str, _History] = OrderedDict()
        # No history expires before this (the front's expiry, or earlier).
        self._first_expiry = math.inf
        self._last: EventKey | None = None
        # Held from the id to the delivery, so that events of a session reach
        # every connection in id order even when threads publish at once.
        self._lock = threading.RLock()

    def publish(self, session_id: str, type: str, json_text: str) -> int:
        now = self._clock()
        sessions = self._sessions
        with self._lock:
            if now >= self._first_expiry:
                self._expire(now)
            history = sessions.get(session_id)
            if history is None:
                history = _History(self._size)
                if len(sessions) >= self._max_sessions:
                    # The front is the session whose last event is oldest.
                    sessions.popitem(last=False)
                    self.evicted += 1
                sessions[session_id] = history
                if self._first_expiry == math.inf:
                    self._first_expiry = now + self._ttl
            else:
                sessions.move_to_end(session_id)
            events = history.events
            prev = events[-1][KEY] if events else None
            event = Event(next_event_id(self._last), type, json_text, prev)
            self._last = event.key
            if len(events) == events.maxlen:
                history.evicted = events[0][KEY]
            events.append(event.record)
            history.expires = now + self._ttl
            return self._deliver(session_id, event)

    def latest(self, session_id: str) -> Event | None:
        history = self._live(session_id)
        if history is None or not history.events:
            return None
        return Event.from_record(history.events[-1])

    def history(self, session_id: str, after: EventKey | None) -> list[Event] | None:
        history = self._live(session_id)
        if history is None:
            return None if after is not None else []
        with self._lock:
            records, evicted = list(history.events), history.evicted
        if after is None or after == evicted:
            return [Event.from_record(record) for record in records]
        for index, record in enumerate(records):
            if record[KEY] == after:
                return [Event.from_record(record) for record in records[index + 1 :]]
        return None

    def subscribe(self, session_id: str) -> None:
        """Nothing to do: every event of the process reaches its bus."""

    def unsubscribe(self, session_id: str) -> None:
        """Nothing to do, as for :meth:`subscribe`."""

    def stats(self) -> dict[str, Any]:
        with self._lock:
            self._expire(self._clock())
            return {"stored_sessions": len(self._sessions), "evicted_sessions": self.evicted}

    def close(self) -> None:
        """Nothing to release: the history goes with the object."""

    def _live(self, session_id: str) -> _History | None:
        history = self._sessions.get(session_id)
        if history is not None and history.expires <= self._clock():
            return None
        return history

    def _expire(self, now: float) -> None:
        sessions = self._sessions
        while sessions:
            session_id, history = next(iter(sessions.items()))
            if history.expires > now:
                self._first_expiry = history.expires
                return
            del sessions[session_id]
        self._first_expiry = math.inf
