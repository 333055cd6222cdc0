"""What the stream code needs from a store of events; one implementation per bus.

A backend assigns ids, keeps each session's recent history and hands every
event to ``deliver`` (this process's bus) on every process that serves the
session. The stream code only ever sees this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from ._events import Event, EventKey

Deliver = Callable[[str, Event], int]
"""Hands an event to this process's bus; returns the connections it reached."""


class BackendUnavailable(Exception):
    """The store cannot be reached; streams are answered with 503."""


class Backend(ABC):
    """Publishes events and answers questions about a session's history."""

    @abstractmethod
    def publish(self, session_id: str, type: str, json_text: str) -> int:
        """Store the event under a new id and deliver it.

        :returns: the connections (in-process) or workers (shared bus) reached.
        """

    @abstractmethod
    def latest(self, session_id: str) -> Event | None:
        """The newest stored event of the session, if any."""

    @abstractmethod
    def history(self, session_id: str, after: EventKey | None) -> list[Event] | None:
        """Stored events after ``after`` (all of them for None), oldest first.

        :returns: None when ``after`` is neither stored nor the event just
            before the oldest stored one: what came between it and the oldest
            stored event is unknown.
        """

    def stats(self) -> dict[str, int]:
        return {}
