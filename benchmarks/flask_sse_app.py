"""flask-sse 1.0 with Redis, as its documentation deploys it (in its own virtual
environment, with the Flask, gunicorn and gevent versions ours runs with):

    gunicorn -k gevent -w 1 --worker-connections 20000 --backlog 4096 \\
        'benchmarks.flask_sse_app:create_app()'

``app.register_blueprint(sse, url_prefix="/api/stream")``: a stream is
``GET /api/stream?channel=<sid>``, and each one holds a Redis pub/sub connection
of its own (``REDIS_URL`` from ``SSE_BENCH_REDIS_URL``: a ``redis-server`` the
harness starts). flask-sse sends nothing before the first event (no connected
frame, no headers) and has no heartbeat. The other routes mirror
``benchmarks/floor.py`` (same bodies, same payload with ``"s0"`` taken just
before each publish), each event published with ``sse.publish(payload, id=...,
channel=sid)``:

``POST /publish/<sid>``, ``POST /publish-many``, ``POST /load`` and
``GET /debug/stats`` (``{"pid", "rss_kib"}``).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from flask_sse import sse

from benchmarks.common import EventIds, progress, rss_kib
from benchmarks.flask_routes import add_control_routes


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["REDIS_URL"] = os.environ["SSE_BENCH_REDIS_URL"]
    app.register_blueprint(sse, url_prefix="/api/stream")
    ids = EventIds()

    def send(session_id: str, data: dict[str, Any]) -> int:
        payload = progress(data)
        return int(sse.publish(payload, id=ids.next(session_id), channel=session_id))

    add_control_routes(app, send, lambda: {"pid": os.getpid(), "rss_kib": rss_kib()})
    return app
