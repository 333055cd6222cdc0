"""``SSESessions``: the blueprint users register, and the hooks they set on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask
from flask.sansio.app import App

from . import _cli, _views
from ._config import Config, ConfigError
from ._server import DRAIN, check_setup
from ._state import EXTENSION_KEY, State
from .metrics import exporter

AuthorizeHook = Callable[[str], bool]
IdentifyHook = Callable[[], str | None]


class SSESessions(Blueprint):
    """Server-Sent Event streams for sessions, as a blueprint.

    Register it on an app (``app.register_blueprint(sse, url_prefix="/api")`` or
    ``sse.init_app(app, url_prefix="/api")``); that reads the app's
    ``SSE_SESSIONS_*`` config and creates the app's own connections and event
    store in ``app.extensions["sse_sessions"]``. One instance can be registered
    on several apps; each gets its own state.
    """

    def __init__(self, name: str = "sse_sessions", import_name: str = __name__, **kwargs: Any):
        kwargs.setdefault("cli_group", "sse")
        super().__init__(name, import_name, **kwargs)
        self.authorize_hook: AuthorizeHook | None = None
        self.identify_hook: IdentifyHook | None = None
        self.add_url_rule("/stream/<session_id>", "stream", _views.stream)
        # Ids with a slash, or none, reach the stream view too, which answers
        # them with a JSON 400 instead of the app's HTML 404.
        self.add_url_rule("/stream/<path:session_id>", "stream_path", _views.stream)
        self.add_url_rule("/stream/", "stream_path", _views.stream, defaults={"session_id": ""})
        self.add_url_rule("/stream/<session_id>/latest", "latest", _views.latest)
        for script in ("sse-sessions.js", "sse-sessions.mjs", "sse-sessions.d.ts"):
            self.add_url_rule(
                f"/{script}",
                script.replace(".", "_").replace("-", "_"),
                _views.client_script,
                defaults={"name": script},
            )
        self.after_request(_views.add_cors_headers)
        self.teardown_request(_views.close_unsent_stream)
        _cli.add_commands(self.cli)

    def authorize(self, f: AuthorizeHook) -> AuthorizeHook:
        """Decorate ``f(session_id) -> bool``, called in the request context of
        the stream and latest routes, at every connect and reconnect; False
        answers 403. With ``SSE_SESSIONS_REQUIRE_TOKEN = None`` (the default)
        an app with this hook serves streams without a token."""
        self.authorize_hook = f
        return f

    def identify(self, f: IdentifyHook) -> IdentifyHook:
        """Decorate ``f() -> str | None`` naming the user of a request, for
        per-user limits and to bind stream tokens; the default (and the answer
        for None) is the client's address, ``request.remote_addr``."""
        self.identify_hook = f
        return f

    def init_app(self, app: Flask, url_prefix: str | None = None, **options: Any) -> None:
        """Register on ``app``: the same as ``app.register_blueprint(self, ...)``."""
        app.register_blueprint(self, url_prefix=url_prefix, **options)

    def register(self, app: App, options: dict[str, Any]) -> None:
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                f"flask-sse-sessions is already registered on the app {app.name!r}:"
                " register one SSESessions blueprint once per app"
            )
        assert isinstance(app, Flask)
        config = Config.from_app_config(app.config)
        tokens_required = config.require_token or (
            config.require_token is None and self.authorize_hook is None
        )
        if tokens_required and not app.secret_key:
            raise ConfigError(
                "flask-sse-sessions closes streams to requests without a signed"
                " stream_url() token, signed with the app's secret key: set"
                " app.config['SECRET_KEY'] before registering the blueprint. Or"
                " decorate an @sse.authorize hook before registering it (streams are"
                " then open to whoever it allows), or set"
                " SSE_SESSIONS_REQUIRE_TOKEN = False to make streams public."
            )
        name = f"{options.get('name_prefix', '')}.{options.get('name', self.name)}".lstrip(".")
        state = State(app, config, self, name)
        super().register(app, options)
        app.extensions[EXTENSION_KEY] = state
        check_setup(state)
        DRAIN.attach()
        exporter()
