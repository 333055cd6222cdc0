"""The Flask floor: what Flask under gunicorn's gevent worker costs by itself.

Run exactly as ours is (``gunicorn -k gevent -w 1 --worker-connections 20000
--backlog 4096 'benchmarks.flask_floor:create_app()'``), it answers
``GET /api/stream/<sid>`` with the same headers and first frame as ours
(``text/event-stream; charset=utf-8``, ``Cache-Control: no-cache``,
``X-Accel-Buffering: no``, chunked by gunicorn; ``retry: 3000`` and the
connected event), then each stream's greenlet sleeps and writes the same
heartbeat every ``SSE_BENCH_HEARTBEAT`` seconds (5 by default), as ours does.
It has the same ``SECRET_KEY`` as ours. It publishes nothing: it is the
reference for what a connection costs in the framework (memory, idle CPU,
connect rate) and runs in W1 only.

``GET /debug/stats``: ``{"connections", "pid", "rss_kib"}``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import gevent
from flask import Flask, Response, jsonify

from benchmarks.common import connected_json, heartbeat_json, rss_kib

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_app() -> Flask:
    app = Flask(__name__)
    # The same secret key as ours: an app that streams with signed URLs has
    # one, and with it Flask opens the session cookie on every request.
    app.config["SECRET_KEY"] = "benchmark"
    heartbeat = float(os.environ.get("SSE_BENCH_HEARTBEAT", "5"))
    open_streams = [0]

    @app.get("/api/stream/<session_id>")
    def stream(session_id: str) -> Response:
        def frames() -> Iterator[str]:
            open_streams[0] += 1
            try:
                yield f"retry: 3000\ndata: {connected_json(session_id)}\n\n"
                while True:
                    gevent.sleep(heartbeat)
                    yield f"data: {heartbeat_json()}\n\n"
            finally:
                open_streams[0] -= 1

        return Response(frames(), mimetype="text/event-stream", headers=STREAM_HEADERS)

    @app.get("/debug/stats")
    def debug_stats() -> Any:
        return jsonify(connections=open_streams[0], pid=os.getpid(), rss_kib=rss_kib())

    return app
