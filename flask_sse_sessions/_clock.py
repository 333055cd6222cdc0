"""One heartbeat clock per process, instead of a timer in every stream's wait.

A stream waits for its events without a timeout: no timer per connection
(a timed wait of each of 10,000 idle streams is 10,000 timers in the loop,
and memory in each parked greenlet). The clock keeps every open connection
in one heap, by the next moment something may be due for it, and at that
moment asks its registry (:meth:`~._registry.Registry.beat`) to write the
heartbeat it is owed (directly to an idle socket where that is safe, else
by waking its stream) or to end it past its deadline (``MAX_STREAM_SECONDS``,
the token's expiry). A connection that wrote in the meantime is simply
looked at again one interval after its last output.

It runs as a daemon thread, a greenlet under gevent's monkey-patching,
started with the first stream of each process (after a fork, anew).
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._registry import Connection, Registry

# The longest the clock sleeps when nothing is due sooner.
_IDLE_SECONDS = 5.0
# The shortest: heartbeats and deadlines are at most this late.
_TURN_SECONDS = 0.05
# Closed connections the heap may hold before it sheds them, at least.
_SHED_AT = 1024


class HeartbeatClock:
    """The heap of (when, tie-breaker, registry, connection) of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, Registry, Connection]] = []
        self._order = itertools.count()
        self._wake = threading.Event()
        self._next = 0.0
        self._pid = 0
        self._closed = 0

    def add(self, registry: Registry, conn: Connection, when: float) -> None:
        """Look at ``conn`` at ``when`` (``time.monotonic()``) and then on."""
        entry = (when, next(self._order), registry, conn)
        if self._pid != os.getpid():
            self._start()
        with self._lock:
            heapq.heappush(self._heap, entry)
            if when < self._next:
                self._wake.set()

    def discard(self) -> None:
        """A connection closed: its entry stays until its time comes, unless
        closed ones come to outnumber the open, when the heap sheds them all
        (so that churn costs no memory: amortized O(1) per close)."""
        with self._lock:
            self._closed += 1
            heap = self._heap
            if self._closed > max(_SHED_AT, len(heap) // 2):
                heap[:] = [entry for entry in heap if not entry[3].closed]
                heapq.heapify(heap)
                self._closed = 0

    def __len__(self) -> int:
        return len(self._heap)

    def _start(self) -> None:
        # After a fork the parent's thread is gone, and its heap with it. The
        # lock and event are made here, in the process that uses them: one
        # made before gevent patched threading (gunicorn --preload) is an OS
        # lock, which a greenlet waiting for it would hold the thread on.
        self._pid = os.getpid()
        self._heap = []
        self._closed = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        threading.Thread(
            target=self._run, args=(self._pid,), name="flask-sse-sessions-clock", daemon=True
        ).start()

    def _run(self, pid: int) -> None:
        heap = self._heap
        while self._pid == pid:
            now = time.monotonic()
            due: dict[Registry, list[tuple[float, int, Registry, Connection]]] = {}
            with self._lock:
                while heap and heap[0][0] <= now:
                    entry = heapq.heappop(heap)
                    due.setdefault(entry[2], []).append(entry)
            again: list[tuple[float, int, Registry, Connection]] = []
            for registry, entries in due.items():
                registry.beat(entries, now, again)
            with self._lock:
                for entry in again:
                    heapq.heappush(heap, entry)
                self._next = heap[0][0] if heap else now + _IDLE_SECONDS
                self._wake.clear()
            # Whatever falls due within a turn waits for the next: a turn
            # costs the same for one connection as for a thousand.
            sleep = max(_TURN_SECONDS, self._next - time.monotonic())
            self._wake.wait(min(sleep, _IDLE_SECONDS))


CLOCK = HeartbeatClock()
