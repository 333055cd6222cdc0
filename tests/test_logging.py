"""What the library logs (logger ``flask_sse_sessions``): connects and
disconnects at DEBUG with session, user key and duration; refusals at INFO;
never a token."""

from __future__ import annotations

import logging
import re

import pytest
from flask import Flask

from flask_sse_sessions import SSESessions, stream_url

SECRET_TOKEN = "not-a-token-but-secret-text"


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="logging-test",
        SSE_SESSIONS_HEARTBEAT_INTERVAL=0.2,
        SSE_SESSIONS_MAX_CONNECTIONS_PER_SESSION=1,
    )
    sse = SSESessions()

    @sse.authorize
    def may_watch(session_id: str) -> bool:
        return session_id != "private"

    app.register_blueprint(sse, url_prefix="/api")
    return app


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "flask_sse_sessions" and r.levelno == level
    ]


def test_connect_and_disconnect_at_debug(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_sse_sessions")
    response = app.test_client().get("/api/stream/job-1", buffered=False)
    next(iter(response.response))
    response.close()
    debug = records(caplog, logging.DEBUG)
    assert any(
        re.fullmatch(r"stream opened: session 'job-1', user '127\.0\.0\.1'", m) for m in debug
    )
    assert any(
        re.fullmatch(r"stream closed: session 'job-1', user '127\.0\.0\.1', \d+\.\d s", m)
        for m in debug
    ), debug
    assert not records(caplog, logging.INFO)


def test_refusals_at_info_without_the_token(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_sse_sessions")
    client = app.test_client()
    bad = client.get(f"/api/stream/job-2?token={SECRET_TOKEN}")
    assert bad.status_code == 401
    assert client.get("/api/stream/private").status_code == 403
    with app.test_request_context():
        url = stream_url("job-3")
    token = url.partition("token=")[2]
    first = client.get(url, buffered=False)
    next(iter(first.response))
    assert client.get(url).status_code == 429
    first.close()
    info = records(caplog, logging.INFO)
    assert len(info) == 3, info
    assert "401 unauthorized" in info[0] and "'job-2'" in info[0]
    assert "403 forbidden" in info[1] and "'private'" in info[1]
    assert "429 session" in info[2] and "'job-3'" in info[2]
    assert SECRET_TOKEN not in caplog.text
    assert token not in caplog.text
