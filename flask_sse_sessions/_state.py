"""The state of the extension on one app, kept in ``app.extensions``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from flask import Flask, current_app, has_app_context, has_request_context, request

from ._backend import Backend
from ._config import Config, ConfigError
from ._events import Event, encode_payload
from ._memory import MemoryBackend
from ._registry import Registry
from .signals import event_broadcast

EXTENSION_KEY = "sse_sessions"


class Hooks(Protocol):
    """The app's hooks, as the blueprint keeps them."""

    authorize_hook: Callable[[str], bool] | None
    identify_hook: Callable[[], str | None] | None


class State:
    """Config, connections and backend of one app in this process."""

    def __init__(self, app: Flask, config: Config, hooks: Hooks, endpoint_prefix: str) -> None:
        self.app = app
        self.config = config
        self.hooks = hooks
        self.endpoint_prefix = endpoint_prefix
        self.registry = Registry(config)
        self.backend = self._make_backend()
        # A bound method is held weakly: the receiver goes away with the app.
        event_broadcast.connect(self.registry.deliver, sender=app)

    def _make_backend(self) -> Backend:
        config = self.config
        if config.redis_url is not None:
            raise ConfigError(
                "SSE_SESSIONS_REDIS_URL is set, but this version of flask-sse-sessions"
                " has only the in-process bus: leave it None"
            )
        return MemoryBackend(self._deliver, config.history_size, config.history_ttl)

    def _deliver(self, session_id: str, event: Event) -> int:
        deliver = self.registry.deliver
        reached = 0
        for receiver, value in event_broadcast.send(self.app, session_id=session_id, event=event):
            if receiver == deliver:
                reached = value
        return reached

    def check_session_id(self, session_id: object) -> str:
        """:raises ValueError: not a string matching ``SSE_SESSIONS_SESSION_ID_PATTERN``."""
        pattern = self.config.session_id_pattern
        if not isinstance(session_id, str) or not pattern.fullmatch(session_id):
            raise ValueError(
                f"invalid session id {session_id!r}: it must match"
                f" SSE_SESSIONS_SESSION_ID_PATTERN {pattern.pattern!r}"
                " (new_session_id() makes one)"
            )
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
            type, data, fields, self.config.max_event_bytes, type_from_data=type_from_data
        )
        return self.backend.publish(session_id, type, text)

    def user_key(self) -> str | None:
        """Who is connecting, for per-user limits: the identify hook, else the address."""
        hook = self.hooks.identify_hook
        key = hook() if hook is not None else None
        return key if key is not None else request.remote_addr

    def bound_user_key(self) -> str | None:
        """The user a token is bound to: the identify hook's answer, if the app has one."""
        hook = self.hooks.identify_hook
        if hook is None or not has_request_context():
            return None
        return hook()

    def stats(self) -> dict[str, int]:
        return {**self.registry.stats(), **self.backend.stats()}


def get_state(caller: str) -> State:
    """The current app's state, or a RuntimeError that says what to do."""
    if not has_app_context():
        raise RuntimeError(
            f"{caller}() needs a Flask application context: call it from a view, or in"
            " a background thread or CLI command wrap it in `with app.app_context():`"
        )
    state = current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise RuntimeError(
            f"{caller}(): flask-sse-sessions is not registered on the app"
            f" {current_app.name!r}. Did you forget app.register_blueprint(SSESessions())?"
        )
    assert isinstance(state, State)
    return state
