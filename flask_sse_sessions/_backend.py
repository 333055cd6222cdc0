"""What the stream code needs from a store of events; one implementation per bus.

A backend assigns ids, keeps each session's recent history and hands every
event to ``deliver`` (this process's bus) on every process that serves the
session. The stream code only ever sees this interface.

A stream uses it in this order: :meth:`Backend.subscribe` once its connection
is registered, then :meth:`Backend.history` or :meth:`Backend.latest` for what
the client missed (live events delivered meanwhile are queued for it already),
and :meth:`Backend.unsubscribe` when it ends. When live events of a session may
have been lost on the way (a shared bus lost its connection), the backend calls
``catch_up(session_id)``: every local stream of the session then reads history
from its own cursor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from ._events import Event, EventKey

Deliver = Callable[[str, Event], int]
"""Hands an event to this process's bus; returns the connections it reached."""

CatchUp = Callable[[str], None]
"""Makes every local stream of a session read history from its cursor."""


class BackendUnavailable(Exception):
    """The event store cannot be reached (Redis is down or does not answer).

    Raised by the broadcast functions and :class:`~flask_sse_sessions.Publisher`
    within a bounded time; a new stream is answered 503 with ``Retry-After``,
    and open streams wait (with heartbeats) and catch up when it is back.
    """


class Backend(ABC):
    """Publishes events and answers questions about a session's history."""

    @abstractmethod
    def publish(self, session_id: str, type: str, json_text: str) -> int:
        """Store the event under a new id and deliver it.

        :returns: the connections (in-process) or workers (shared bus) reached.
        :raises BackendUnavailable: the store cannot be reached (nothing was
            stored) or did not answer in time (the event may be stored later).
        """

    @abstractmethod
    def latest(self, session_id: str) -> Event | None:
        """The newest stored event of the session, if any.

        :raises BackendUnavailable: the store cannot be reached.
        """

    @abstractmethod
    def history(self, session_id: str, after: EventKey | None) -> list[Event] | None:
        """Stored events after ``after`` (all of them for None), oldest first.

        :returns: None when ``after`` is neither stored nor the event just
            before the oldest stored one: what came between it and the oldest
            stored event is unknown.
        :raises BackendUnavailable: the store cannot be reached.
        """

    @abstractmethod
    def subscribe(self, session_id: str) -> None:
        """Make sure the session's live events reach this process's bus.

        Returns once they do, so that history read afterwards and live events
        delivered afterwards leave no gap between them. Every successful call
        is paired with one :meth:`unsubscribe`; a call that raises holds nothing.

        :raises BackendUnavailable: the subscription was not confirmed in time.
        """

    @abstractmethod
    def unsubscribe(self, session_id: str) -> None:
        """Undo one :meth:`subscribe`; never blocks and never raises."""

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """The backend's numbers for :func:`~flask_sse_sessions.stats`."""

    @abstractmethod
    def close(self) -> None:
        """Stop background work and release connections (tests, shutdown)."""
