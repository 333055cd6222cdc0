"""The state of the extension on one app, kept in ``app.extensions``."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from blinker import Signal
from flask import Flask, current_app, has_request_context, request

from ._backend import Backend, CatchUp, Deliver
from ._config import DEFAULT_MAX_CONNECTIONS_PER_USER, Config, ConfigError
from ._counters import Counters
from ._events import Event
from ._memory import MemoryBackend
from ._publisher import Broadcaster
from ._registry import Connection, Registry, limit_key
from .signals import event_broadcast

EXTENSION_KEY = "sse_sessions"

BUS = Signal("flask-sse-sessions bus")
"""The in-process bus (private): each app's registry fan-out is its one receiver
for that app. Observers get :data:`~flask_sse_sessions.signals.event_broadcast`
after it, so that one that raises fails neither a broadcast nor the listener."""

logger = logging.getLogger("flask_sse_sessions")

# What werkzeug's ProxyFix leaves in the environ of each request it rewrote.
_PROXY_FIX_KEY = "werkzeug.proxy_fix.orig"

STATES: weakref.WeakSet[State] = weakref.WeakSet()
"""Every app's state in this process, for the metrics and the drain."""


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
        self.counters = Counters()
        self.registry = Registry(config, self.counters)
        STATES.add(self)
        # A bound method is held weakly: the receiver goes away with the app.
        BUS.connect(self.registry.deliver, sender=app)
        # The bus's receivers for this app, resolved once: while the state
        # lives they are its registry's fan-out alone (one state per app, and
        # the bus is private). Resolving them at each event was an eighth of
        # a broadcast's cost.
        self._receivers = tuple(BUS.receivers_for(app))
        self.backend = make_backend(config, self._deliver, self.registry.catch_up)
        self.broadcaster = Broadcaster(
            self.backend, config.session_id_pattern, config.max_event_bytes
        )
        self._warned_no_address = False
        self._warned_proxy = False

    def check_session_id(self, session_id: object) -> str:
        """:raises ValueError: not a string matching ``SSE_SESSIONS_SESSION_ID_PATTERN``."""
        return self.broadcaster.check_session_id(session_id)

    def _deliver(self, session_id: str, event: Event) -> int:
        reached = 0
        # Signal.send would resolve the receivers and check each for a
        # coroutine at every event.
        for receiver in self._receivers:
            reached = receiver(self.app, session_id=session_id, event=event)
        if event_broadcast.receivers:
            try:
                event_broadcast.send(self.app, session_id=session_id, event=event)
            except Exception:
                logger.exception(
                    "a receiver of event_broadcast raised (event %s of session %r);"
                    " the event was delivered all the same",
                    event.id,
                    session_id,
                )
        return reached

    def close_connection(self, conn: Connection) -> bool:
        """Unregister ``conn`` and drop its subscription; False if it was closed already."""
        if not self.registry.close(conn):
            return False
        self.backend.unsubscribe(conn.session_id)
        return True

    def require_token(self) -> bool:
        """Whether the stream and latest routes need a valid token: always with
        ``SSE_SESSIONS_REQUIRE_TOKEN = True``, never with False, and with None
        (the default) unless the app registered an authorize hook."""
        required = self.config.require_token
        return self.hooks.authorize_hook is None if required is None else required

    def client(self) -> tuple[str | None, str | None, int | None]:
        """Who is connecting: the user key the signals report (the identify
        hook's answer, else the address), the key of the per-user limit slots,
        and that key's limit.

        Users named by the identify hook get ``SSE_SESSIONS_MAX_CONNECTIONS_PER_USER``,
        32 when it is None; plain addresses get it too, no limit when it is None.
        """
        hook = self.hooks.identify_hook
        user = hook() if hook is not None else None
        per_user = self.config.max_connections_per_user
        if user is not None:
            limit = DEFAULT_MAX_CONNECTIONS_PER_USER if per_user is None else per_user
            return user, limit_key(user, None), limit
        address = request.remote_addr or None
        if address is None and not self._warned_no_address:
            self._warned_no_address = True
            logger.warning(
                "a stream request came without a client address (a Unix socket, or a"
                " proxy in front without werkzeug's ProxyFix): such streams count"
                " under no per-user limit. Wrap the app in ProxyFix, or name users"
                " with @sse.identify. (Logged once per process.)"
            )
        elif (
            per_user is not None
            and not self._warned_proxy
            and "X-Forwarded-For" in request.headers
            and _PROXY_FIX_KEY not in request.environ
        ):
            self._warned_proxy = True
            logger.warning(
                "a stream request came through a proxy (it has X-Forwarded-For) but"
                " the app sees the proxy's address %s: every client behind it shares"
                " one per-user limit. Wrap the app in werkzeug's ProxyFix. (Logged"
                " once per process.)",
                address,
            )
        return address, limit_key(None, address), per_user

    def bound_user_key(self) -> str | None:
        """The user a token is bound to: the identify hook's answer, if the app has one."""
        hook = self.hooks.identify_hook
        if hook is None or not has_request_context():
            return None
        return hook()

    def stats(self) -> dict[str, Any]:
        backend = self.backend.stats()
        return {
            **self.registry.stats(),
            **backend,
            **self.counters.as_stats(),
            "events_published": self.broadcaster.published,
            "backend_errors": backend.get("redis_errors", 0),
            "backend_reconnects": backend.get("redis_reconnects", 0),
        }


def make_backend(config: Config, deliver: Deliver, catch_up: CatchUp) -> Backend:
    """The backend ``config`` asks for: Redis with a URL, else the in-process one."""
    if config.redis_url is None:
        return MemoryBackend(
            deliver,
            config.history_size,
            config.history_ttl,
            max_sessions=config.max_stored_sessions,
        )
    from ._redis import RedisBackend

    try:
        return RedisBackend(
            deliver,
            catch_up,
            config.redis_url,
            config.redis_options,
            key_prefix=config.key_prefix,
            history_size=config.history_size,
            history_ttl=config.history_ttl,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"SSE_SESSIONS_REDIS_URL or SSE_SESSIONS_REDIS_OPTIONS cannot work: {exc}"
        ) from None


def get_state(caller: str) -> State:
    """The current app's state, or a RuntimeError that says what to do."""
    try:
        # The app itself, once: each use of the proxy looks the context up again.
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    except RuntimeError:
        raise RuntimeError(
            f"{caller}() needs a Flask application context: call it from a view, or in"
            " a background thread or CLI command wrap it in `with app.app_context():`"
        ) from None
    state = app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise RuntimeError(
            f"{caller}(): flask-sse-sessions is not registered on the app"
            f" {app.name!r}. Did you forget app.register_blueprint(SSESessions())?"
        )
    assert isinstance(state, State)
    return state
