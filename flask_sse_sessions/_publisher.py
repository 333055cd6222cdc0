"""Publishing without Flask: validation, encoding and the four broadcast calls.

:class:`Broadcaster` is the one implementation behind both the app's
module-level functions (``broadcast_progress(...)`` inside an app context) and
:class:`Publisher`, which Celery tasks, RQ jobs and scripts use to reach the
app's streams through Redis without the app. Nothing here imports Flask.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from ._config import DEFAULTS
from ._events import encode_payload


class _Store(Protocol):
    def publish(self, session_id: str, type: str, json_text: str) -> int: ...


class Broadcaster:
    """Validates, encodes and publishes events to a store.

    :param store: a backend, or anything with its ``publish`` method.
    :param session_id_pattern: what a session id may be.
    :param max_event_bytes: the encoded size limit of one event.
    """

    def __init__(
        self, store: _Store, session_id_pattern: re.Pattern[str], max_event_bytes: int
    ) -> None:
        self._store = store
        self._pattern = session_id_pattern
        self._max_event_bytes = max_event_bytes
        self.published = 0
        # The session id checked last: a task publishes to one session many times.
        self._checked: str | None = None

    def check_session_id(self, session_id: object) -> str:
        """:raises ValueError: not a string matching ``SSE_SESSIONS_SESSION_ID_PATTERN``."""
        checked = self._checked
        if session_id is checked and checked is not None:
            return checked
        pattern = self._pattern
        if not isinstance(session_id, str) or not pattern.fullmatch(session_id):
            raise ValueError(
                f"invalid session id {session_id!r}: it must match"
                f" SSE_SESSIONS_SESSION_ID_PATTERN {pattern.pattern!r}"
                " (new_session_id() makes one)"
            )
        if session_id.__class__ is str:
            self._checked = session_id
        return session_id

    def publish(
        self,
        session_id: str,
        type: str,
        data: Mapping[str, Any] | None,
        fields: Mapping[str, Any],
        *,
        type_from_data: bool = False,
    ) -> int:
        self.check_session_id(session_id)
        type, text = encode_payload(
            type, data, fields, self._max_event_bytes, type_from_data=type_from_data
        )
        reached = self._store.publish(session_id, type, text)
        self.published += 1
        return reached

    def broadcast(
        self, session_id: str, type: str, data: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> int:
        """Send ``{"type": type, **data, **fields, "timestamp": ...}`` to a session.

        The event is validated and encoded here, once; nothing waits for any client.

        :returns: how many connections of this process (in-process bus) or
            how many workers (Redis) it reached.
        :raises TypeError: ``data`` is not a dict, or not JSON serialisable.
        :raises ValueError: an invalid session id or type name, or an event larger
            than ``SSE_SESSIONS_MAX_EVENT_BYTES``.
        :raises BackendUnavailable: Redis could not be reached, or did not answer
            within a bounded time (5 seconds by default); after a timeout the
            event may still be stored and delivered once Redis answers.
        """
        return self.publish(session_id, type, data, fields)

    def broadcast_progress(
        self, session_id: str, data: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> int:
        """Send a ``progress`` event; a ``"type"`` key in ``data`` or ``fields``
        names another type. Otherwise as :meth:`broadcast`."""
        return self.publish(session_id, "progress", data, fields, type_from_data=True)

    def broadcast_complete(
        self, session_id: str, data: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> int:
        """Send the terminal ``complete`` event: every stream of the session ends
        after it, and a reconnect from it is answered 204. Otherwise as :meth:`broadcast`."""
        return self.publish(session_id, "complete", data, fields)

    def broadcast_error(
        self,
        session_id: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        /,
        **fields: Any,
    ) -> int:
        """Send an ``error`` event with ``"message": message``. Otherwise as :meth:`broadcast`.

        :raises TypeError: ``message`` is not a string.
        """
        if not isinstance(message, str):
            raise TypeError(f"an error message must be a string, not {message!r}")
        return self.publish(session_id, "error", {"message": message, **(data or {})}, fields)


class Publisher(Broadcaster):
    """Publish to an app's streams through Redis, from a process without the app.

    For Celery tasks, RQ jobs, cron jobs and scripts: the app's streams, on
    every worker and host, receive what is published here, with the same ids,
    history and resume as events broadcast by the app itself. The methods,
    validation and exceptions are those of the module-level functions
    (:func:`~flask_sse_sessions.broadcast` and friends), and each returns how
    many of the app's worker processes received the event.

    Safe to create before a fork (Celery's prefork pool, RQ's work horse):
    nothing connects until the first broadcast, and each process opens its own
    connections. ::

        publisher = Publisher("redis://localhost:6379/0")
        publisher.broadcast_progress(session_id, {"percent": 40})

    :param redis_url: the app's ``SSE_SESSIONS_REDIS_URL``.
    :param key_prefix: the app's ``SSE_SESSIONS_KEY_PREFIX``.
    :param max_event_bytes: the encoded size limit of one event.
    :param history_size: events kept per session: the app's ``SSE_SESSIONS_HISTORY_SIZE``.
    :param history_ttl: seconds a session's history lives after its last event:
        the app's ``SSE_SESSIONS_HISTORY_TTL``.
    :param redis_options: keyword arguments for redis-py's connection pool, as
        the app's ``SSE_SESSIONS_REDIS_OPTIONS``.
    :raises ImportError: redis-py is not installed.
    :raises ValueError: a URL that is not a Redis URL, or an option out of range.
    :raises TypeError: an option of the wrong type.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        key_prefix: str = DEFAULTS["SSE_SESSIONS_KEY_PREFIX"],
        max_event_bytes: int = DEFAULTS["SSE_SESSIONS_MAX_EVENT_BYTES"],
        history_size: int = DEFAULTS["SSE_SESSIONS_HISTORY_SIZE"],
        history_ttl: float = DEFAULTS["SSE_SESSIONS_HISTORY_TTL"],
        **redis_options: Any,
    ) -> None:
        _check_text("redis_url", redis_url)
        _check_text("key_prefix", key_prefix)
        _check_integer("max_event_bytes", max_event_bytes, 64)
        _check_integer("history_size", history_size, 1)
        if isinstance(history_ttl, bool) or not isinstance(history_ttl, int | float):
            raise TypeError(f"history_ttl must be a number of seconds, not {history_ttl!r}")
        if not history_ttl > 0:
            raise ValueError(f"history_ttl must be above 0 seconds, not {history_ttl!r}")
        from ._redis import RedisStore

        self._redis = RedisStore(redis_url, redis_options, key_prefix, history_size, history_ttl)
        pattern = re.compile(DEFAULTS["SSE_SESSIONS_SESSION_ID_PATTERN"])
        super().__init__(self._redis, pattern, max_event_bytes)

    def close(self) -> None:
        """Close this process's connections to Redis; the next broadcast opens new ones."""
        self._redis.close()


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {value!r}")
    if not value:
        raise ValueError(f"{name} must not be empty")


def _check_integer(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value!r}")
