"""Ours, as the benchmark runs it: ``gunicorn -k gevent -w 1 --worker-connections 20000
'benchmarks.app:create_app()'`` with the in-process bus.

The routes mirror ``benchmarks/floor.py`` exactly (same bodies, same ``"s0"`` send
time taken just before each broadcast), so the load client does the same work:

``GET /api/stream/<sid>`` (the blueprint), ``POST /publish/<sid>``,
``POST /publish-many``, ``POST /load`` and ``GET /debug/stats``.

Config: the ``SSE_BENCH_CONFIG`` environment variable (JSON) is applied over the
benchmark defaults below.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from flask import Flask

from benchmarks.common import rss_kib
from benchmarks.flask_routes import add_control_routes
from flask_sse_sessions import SSESessions, broadcast_progress, stats
from flask_sse_sessions._state import BUS

BENCH_DEFAULTS: dict[str, Any] = {
    # A connect must not replay the previous event: only broadcasts count as deliveries.
    "SSE_SESSIONS_REPLAY_ON_CONNECT": "none",
    "SSE_SESSIONS_HEARTBEAT_INTERVAL": 5,
    # The default (10,000) would refuse the control requests' neighbours at N = 10k.
    "SSE_SESSIONS_MAX_CONNECTIONS": 20000,
    # The load clients open streams without tokens, from one address.
    "SSE_SESSIONS_REQUIRE_TOKEN": False,
}


def _watched() -> int:
    from flask_sse_sessions._watcher import WATCHER

    return WATCHER.watching()


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "benchmark"
    app.config.update(BENCH_DEFAULTS)
    app.config.update(json.loads(os.environ.get("SSE_BENCH_CONFIG", "{}")))
    app.register_blueprint(SSESessions(), url_prefix="/api")

    def send(session_id: str, data: dict[str, Any]) -> int:
        return broadcast_progress(session_id, {**data, "s0": time.time()})

    add_control_routes(
        app,
        send,
        lambda: {
            **stats(),
            "receivers": len(BUS.receivers),
            "watched_sockets": _watched(),
            "pid": os.getpid(),
            "rss_kib": rss_kib(),
        },
    )

    @app.get("/health")
    def health() -> str:
        return "ok"

    return app
