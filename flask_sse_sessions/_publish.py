"""Publishing from views, background tasks and CLI commands of the app."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from ._state import get_state


def broadcast(
    session_id: str, type: str, data: Mapping[str, Any] | None = None, /, **fields: Any
) -> int:
    """Send ``{"type": type, **data, **fields, "timestamp": ...}`` to a session.

    Needs an app context. The event is validated and encoded here, once;
    nothing waits for any client.

    :returns: how many connections of this process it reached (in-process
        bus), or how many worker processes received it (Redis).
    :raises TypeError: ``data`` is not a dict, or not JSON serialisable.
    :raises ValueError: an invalid session id or type name, or an event larger
        than ``SSE_SESSIONS_MAX_EVENT_BYTES``.
    :raises BackendUnavailable: Redis could not be reached, or did not answer
        within a bounded time (5 seconds by default). When it was reached but
        did not answer, the event may still be stored and delivered once it
        does: a timeout cannot tell.
    :raises RuntimeError: outside an app context, or on an app without the blueprint.
    """
    return get_state("broadcast").broadcaster.broadcast(session_id, type, data, **fields)


def broadcast_progress(
    session_id: str, data: Mapping[str, Any] | None = None, /, **fields: Any
) -> int:
    """Send a ``progress`` event; a ``"type"`` key in ``data`` or ``fields`` names
    another type. Otherwise as :func:`broadcast`."""
    return get_state("broadcast_progress").broadcaster.broadcast_progress(
        session_id, data, **fields
    )


def broadcast_complete(
    session_id: str, data: Mapping[str, Any] | None = None, /, **fields: Any
) -> int:
    """Send the terminal ``complete`` event: every stream of the session ends
    after it, and a reconnect from it is answered 204. Otherwise as :func:`broadcast`."""
    return get_state("broadcast_complete").broadcaster.broadcast_complete(
        session_id, data, **fields
    )


def broadcast_error(
    session_id: str, message: str, data: Mapping[str, Any] | None = None, /, **fields: Any
) -> int:
    """Send an ``error`` event with ``"message": message``. Otherwise as :func:`broadcast`.

    :raises TypeError: ``message`` is not a string.
    """
    return get_state("broadcast_error").broadcaster.broadcast_error(
        session_id, message, data, **fields
    )


def new_session_id() -> str:
    """A new random session id: 22 URL-safe characters, 128 random bits."""
    return secrets.token_urlsafe(16)


def stats() -> dict[str, Any]:
    """This process's numbers for the current app.

    Always: ``connections`` (open streams), ``sessions`` (sessions with an
    open stream), ``users`` (distinct user keys connected) and ``dropped``
    (clients cut for not reading). With the in-process bus:
    ``stored_sessions`` (sessions with history). With Redis
    (``SSE_SESSIONS_REDIS_URL``), the state of this process's listener:

    ``redis_listener``
        ``"idle"`` (no stream has needed it yet: it starts with the first),
        ``"connecting"``, ``"connected"``, ``"reconnecting"`` (after a failure,
        backing off) or ``"closed"``.
    ``redis_connected``
        True while the listener's connection is up and subscribed.
    ``redis_channels``
        Session channels subscribed: sessions with a stream in this process,
        and those whose last stream ended within the grace period.
    ``redis_reconnects``
        Times the listener connected again after losing its connection.
    ``redis_errors``
        Failures seen: lost or unresponsive listener connections, and
        commands that failed (each broadcast or history read that raised
        :class:`BackendUnavailable`).
    ``redis_last_error``
        The last of those failures as text (it names the server), or None.
    """
    return get_state("stats").stats()
