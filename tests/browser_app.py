"""The app the browser tests run under gunicorn for the client's own tests.

``/page/classic`` and ``/page/module`` are blank pages that load the client as a
classic script or as an ES module and expose it as ``window.client``; the test
publishes with ``POST /publish/<session_id>``. Config comes from the
environment variable ``SSE_TEST_CONFIG`` (JSON).
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask, abort, jsonify, request

from flask_sse_sessions import SSESessions, broadcast, broadcast_complete, stream_url

_PAGES = {
    "classic": """<!doctype html><meta charset="utf-8"><title>classic</title>
<script src="/api/sse-sessions.js"></script>
<script>window.client = SSESessions;</script>""",
    "module": """<!doctype html><meta charset="utf-8"><title>module</title>
<script type="module">
import client, { connect } from "/api/sse-sessions.mjs";
window.client = { connect: connect, isDefault: client.connect === connect };
</script>""",
}


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "browser-test-secret"
    app.config["SSE_SESSIONS_REQUIRE_TOKEN"] = False  # the client's tests are not about access
    app.config.update(json.loads(os.environ.get("SSE_TEST_CONFIG", "{}")))
    app.register_blueprint(SSESessions(), url_prefix="/api")

    @app.get("/page/<kind>")
    def page(kind: str) -> Any:
        if kind not in _PAGES:
            abort(404)
        return _PAGES[kind]

    @app.get("/url/<session_id>")
    def url(session_id: str) -> Any:
        return jsonify(url=stream_url(session_id))

    @app.post("/publish/<session_id>")
    def publish(session_id: str) -> Any:
        body = request.get_json()
        if body["type"] == "complete":
            broadcast_complete(session_id, body.get("data"))
        else:
            broadcast(session_id, body["type"], body.get("data"))
        return jsonify(ok=True)

    @app.get("/health")
    def health() -> str:
        return "ok"

    return app
