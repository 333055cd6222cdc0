"""The control routes of the two Flask servers under test (ours and flask-sse),
written once: ``POST /publish/<sid>``, ``POST /publish-many``, ``POST /load``
and ``GET /debug/stats``, around each server's own ``send``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
from flask import Flask, jsonify, request

from benchmarks.common import publish_all, run_load


def add_control_routes(
    app: Flask,
    send: Callable[[str, dict[str, Any]], int],
    stats: Callable[[], dict[str, Any]],
) -> None:
    """Publish with ``send`` (in an app context); ``/debug/stats`` answers ``stats()``."""

    def load(body: dict[str, Any]) -> None:
        with app.app_context():
            run_load(body, send, gevent.sleep)

    @app.post("/publish/<session_id>")
    def publish_one(session_id: str) -> Any:
        return jsonify(reached=publish_all(send, [session_id], request.get_json()))

    @app.post("/publish-many")
    def publish_many() -> Any:
        body = request.get_json()
        return jsonify(reached=publish_all(send, body["sessions"], body))

    @app.post("/load")
    def start_load() -> Any:
        gevent.spawn(load, request.get_json())
        return jsonify(started=True)

    @app.get("/debug/stats")
    def debug_stats() -> Any:
        return jsonify(stats())
