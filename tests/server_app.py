"""The app the end-to-end tests run under gunicorn's gevent worker.

Its config comes from the environment variable ``SSE_TEST_CONFIG`` (JSON), and
it adds routes that a real app would not have: publishing from an HTTP request,
and reading the worker's numbers.
"""

from __future__ import annotations

import json
import os
import resource
import time
from typing import Any

from flask import Flask, jsonify, request, session

from flask_sse_sessions import (
    BackendUnavailable,
    SSESessions,
    broadcast,
    broadcast_complete,
    broadcast_progress,
    stats,
    stream_url,
)
from flask_sse_sessions._state import BUS
from flask_sse_sessions._watcher import WATCHER
from flask_sse_sessions.signals import connection_opened


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def create_app() -> Flask:
    hooks = json.loads(os.environ.get("SSE_TEST_HOOKS", "{}"))
    app = Flask(__name__)
    if not hooks.get("no_secret_key"):
        app.config["SECRET_KEY"] = "end-to-end-test-secret"
    if not hooks.get("library_defaults"):
        # Most tests are not about access: their streams are public, unless
        # the test's config says otherwise. {"library_defaults": true} keeps
        # the library's own defaults.
        app.config["SSE_SESSIONS_REQUIRE_TOKEN"] = False
    app.config.update(json.loads(os.environ.get("SSE_TEST_CONFIG", "{}")))
    sse = SSESessions()

    if "deny" in hooks:

        @sse.authorize
        def may_watch(session_id: str) -> bool:
            return session_id not in hooks["deny"]

    if hooks.get("identify_by_header"):

        @sse.identify
        def user_key() -> str | None:
            return request.headers.get("X-User")

    if hooks.get("login"):
        _add_flask_login(app, sse)

    if hooks.get("session_cookie"):
        _add_session_cookie_login(app, sse)

    if hooks.get("proxy_fix"):
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]

    app.register_blueprint(sse, url_prefix="/api")

    if "leak_bytes" in hooks:
        # A deliberate leak, to show that the leak test measures one.
        kept: list[bytes] = []

        def leak(sender: Flask, **extra: Any) -> None:
            kept.append(bytes(hooks["leak_bytes"]))

        connection_opened.connect(leak, sender=app, weak=False)

    if hooks.get("worker_pid"):
        # Which worker answered: the end-to-end tests spread clients over workers.
        @app.after_request
        def worker_pid(response: Any) -> Any:
            response.headers["X-Worker-Pid"] = str(os.getpid())
            return response

    if "redis_probe" in hooks:
        # Probe an idle Redis listener sooner: [interval, timeout] in seconds.
        from flask_sse_sessions import _redis

        _redis._PROBE_INTERVAL, _redis._PROBE_TIMEOUT = hooks["redis_probe"]

    if hooks.get("clock"):
        _add_clock(app)

    if hooks.get("hold_history"):
        _add_history_gate(app)

    if hooks.get("count_direct_writes"):
        _count_direct_writes()

    if "slow_history" in hooks:
        # Reading history yields for a while, as a network backend would: live
        # events published meanwhile are queued for the new connection too.
        _slow_down_history(app, hooks["slow_history"])

    @app.post("/publish/<session_id>")
    def publish(session_id: str) -> Any:
        body = request.get_json()
        kind = body.get("type", "progress")
        data = body.get("data")
        reached = []
        # Yield to the worker's other greenlets after every so many events
        # (0: never), so that direct writes happen in between.
        yield_every = body.get("yield_every", 0)
        try:
            for index in range(body.get("count", 1)):
                if yield_every and index and index % yield_every == 0:
                    time.sleep(0)
                payload = dict(data or {}, n=index) if body.get("count") else data
                if kind == "progress":
                    reached.append(broadcast_progress(session_id, payload))
                elif kind == "complete":
                    reached.append(broadcast_complete(session_id, payload))
                else:
                    reached.append(broadcast(session_id, kind, payload))
        except BackendUnavailable as exc:
            return jsonify(error="BackendUnavailable", message=str(exc), reached=reached), 503
        return jsonify(reached=reached)

    @app.get("/url/<session_id>")
    def url(session_id: str) -> Any:
        return jsonify(url=stream_url(session_id))

    @app.get("/debug/stats")
    def debug_stats() -> Any:
        return jsonify(
            {
                **stats(),
                "pid": os.getpid(),
                "receivers": len(BUS.receivers),
                "watched_sockets": WATCHER.watching(),
                "rss_kib": _rss_kib(),
                **DIRECT_WRITES,
            }
        )

    @app.post("/echo")
    def echo() -> Any:
        return request.get_data()

    @app.get("/metrics")
    def metrics() -> Any:
        # A real app protects this route like any other.
        from flask_sse_sessions.metrics import metrics_response

        return metrics_response()

    @app.get("/health")
    def health() -> str:
        return "ok"

    return app


DIRECT_WRITES: dict[str, int] = {}


def _count_direct_writes() -> None:
    """Count the non-blocking writes of broadcasts and of the heartbeat clock,
    and those a socket took only part of (or none), in the stats."""
    from flask_sse_sessions import _direct, _registry

    DIRECT_WRITES.update(direct_sends=0, direct_partial=0)
    send_now = _direct.send_now

    def counting(conn: Any, data: bytes, now: float) -> bool:
        DIRECT_WRITES["direct_sends"] += 1
        done = send_now(conn, data, now)
        if not done and conn.unsent:
            DIRECT_WRITES["direct_partial"] += 1
        return done

    _direct.send_now = counting  # type: ignore[assignment]
    _registry.send_now = counting  # type: ignore[assignment]


def _owner(session_id: str) -> str:
    """Whose session this is in the login examples: ``alice_123`` is alice's."""
    return session_id.partition("_")[0]


def _add_flask_login(app: Flask, sse: SSESessions) -> None:
    """``{"login": true}``: flask-login users; ``/login/<name>`` signs in as name.

    Users may watch their own sessions only, and are identified by their id.
    """
    from flask_login import LoginManager, UserMixin, current_user, login_user

    class User(UserMixin):
        def __init__(self, name: str) -> None:
            self.id = name

    login_manager = LoginManager(app)

    @login_manager.user_loader
    def load_user(user_id: str) -> User:
        return User(user_id)

    @app.post("/login/<name>")
    def login(name: str) -> str:
        login_user(User(name))
        return "ok"

    @sse.authorize
    def may_watch(session_id: str) -> bool:
        return bool(current_user.is_authenticated and current_user.id == _owner(session_id))

    @sse.identify
    def user_key() -> str | None:
        return str(current_user.id) if current_user.is_authenticated else None


def _add_session_cookie_login(app: Flask, sse: SSESessions) -> None:
    """``{"session_cookie": true}``: Flask's own session cookie names the user;
    ``/session-login/<name>`` sets it. Users may watch their own sessions only."""

    @app.post("/session-login/<name>")
    def session_login(name: str) -> str:
        session["user"] = name
        return "ok"

    @sse.authorize
    def may_watch(session_id: str) -> bool:
        user = session.get("user")
        return user is not None and user == _owner(session_id)

    @sse.identify
    def user_key() -> str | None:
        user = session.get("user")
        return str(user) if user is not None else None


def _slow_down_history(app: Flask, seconds: float) -> None:
    import time

    backend = app.extensions["sse_sessions"].backend
    history, latest = backend.history, backend.latest

    def slow_history(session_id: str, after: Any) -> Any:
        time.sleep(seconds)
        return history(session_id, after)

    def slow_latest(session_id: str) -> Any:
        time.sleep(seconds)
        return latest(session_id)

    backend.history, backend.latest = slow_history, slow_latest


def _add_clock(app: Flask) -> None:
    """``{"clock": true}``: history TTLs count on a clock the test moves on with
    ``POST /debug/clock`` and ``{"advance": seconds}``."""
    import time

    offset = [0.0]
    app.extensions["sse_sessions"].backend._clock = lambda: time.monotonic() + offset[0]

    @app.post("/debug/clock")
    def advance_clock() -> Any:
        offset[0] += float(request.get_json()["advance"])
        return jsonify(offset=offset[0])


def _add_history_gate(app: Flask) -> None:
    """``{"hold_history": true}``: ``POST /debug/history/hold`` with
    ``{"after": n}`` lets n more reads of history pass and holds the ones after
    them until ``POST /debug/history/release``. Both answer how many reads wait."""
    import threading

    backend = app.extensions["sse_sessions"].backend
    history, latest = backend.history, backend.latest
    released = threading.Event()
    released.set()
    waiting, passes = [0], [0]

    def wait() -> None:
        if released.is_set() or passes[0] > 0:
            passes[0] = max(passes[0] - 1, 0)
            return
        waiting[0] += 1
        try:
            released.wait()
        finally:
            waiting[0] -= 1

    def held_history(session_id: str, after: Any) -> Any:
        wait()
        return history(session_id, after)

    def held_latest(session_id: str) -> Any:
        wait()
        return latest(session_id)

    backend.history, backend.latest = held_history, held_latest

    @app.post("/debug/history/<action>")
    def gate(action: str) -> Any:
        if action == "release":
            released.set()
        elif action == "hold":
            passes[0] = int((request.get_json(silent=True) or {}).get("after", 0))
            released.clear()
        return jsonify(waiting=waiting[0], released=released.is_set())
