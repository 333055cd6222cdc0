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

import gevent
from flask import Flask, jsonify, request
from flask_sse import sse

from benchmarks.common import EventIds, progress, rss_kib, run_load


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["REDIS_URL"] = os.environ["SSE_BENCH_REDIS_URL"]
    app.register_blueprint(sse, url_prefix="/api/stream")
    ids = EventIds()

    def send(session_id: str, data: dict[str, Any]) -> int:
        payload = progress(data)
        return int(sse.publish(payload, id=ids.next(session_id), channel=session_id))

    def publish(session_ids: list[str], body: dict[str, Any]) -> list[int]:
        data = body.get("data") or {}
        return [
            send(session_id, {**data, "n": index})
            for session_id in session_ids
            for index in range(body.get("count", 1))
        ]

    def load(body: dict[str, Any]) -> None:
        with app.app_context():
            run_load(body, send, gevent.sleep)

    @app.post("/publish/<session_id>")
    def publish_one(session_id: str) -> Any:
        return jsonify(reached=publish([session_id], request.get_json()))

    @app.post("/publish-many")
    def publish_many() -> Any:
        body = request.get_json()
        return jsonify(reached=publish(body["sessions"], body))

    @app.post("/load")
    def start_load() -> Any:
        gevent.spawn(load, request.get_json())
        return jsonify(started=True)

    @app.get("/debug/stats")
    def debug_stats() -> Any:
        return jsonify(pid=os.getpid(), rss_kib=rss_kib())

    return app
