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

    :returns: how many connections of this process it reached.
    :raises TypeError: ``data`` is not a dict, or not JSON serialisable.
    :raises ValueError: an invalid session id or type name, or an event larger
        than ``SSE_SESSIONS_MAX_EVENT_BYTES``.
    :raises RuntimeError: outside an app context, or on an app without the blueprint.
    """
    return get_state("broadcast").publish(session_id, type, data, fields)


def broadcast_progress(
    session_id: str, data: Mapping[str, Any] | None = None, /, **fields: Any
) -> int:
    """Send a ``progress`` event; a ``"type"`` key in ``data`` or ``fields`` names
    another type. Otherwise as :func:`broadcast`."""
    return get_state("broadcast_progress").publish(
        session_id, "progress", data, fields, type_from_data=True
    )


def broadcast_complete(
    session_id: str, data: Mapping[str, Any] | None = None, /, **fields: Any
) -> int:
    """Send the terminal ``complete`` event: every stream of the session ends
    after it, and a reconnect from it is answered 204. Otherwise as :func:`broadcast`."""
    return get_state("broadcast_complete").publish(session_id, "complete", data, fields)


def broadcast_error(
    session_id: str, message: str, data: Mapping[str, Any] | None = None, /, **fields: Any
) -> int:
    """Send an ``error`` event with ``"message": message``. Otherwise as :func:`broadcast`.

    :raises TypeError: ``message`` is not a string.
    """
    if not isinstance(message, str):
        raise TypeError(f"an error message must be a string, not {message!r}")
    payload = {"message": message, **(data or {})}
    return get_state("broadcast_error").publish(session_id, "error", payload, fields)


def new_session_id() -> str:
    """A new random session id: 22 URL-safe characters, 128 random bits."""
    return secrets.token_urlsafe(16)


def stats() -> dict[str, int]:
    """This process's numbers for the current app.

    ``connections`` (open streams), ``sessions`` (sessions with an open
    stream), ``users`` (distinct user keys connected), ``dropped`` (clients cut
    for not reading) and ``stored_sessions`` (sessions with history).
    """
    return get_state("stats").stats()
