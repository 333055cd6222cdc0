"""Attaching the extension: registration, per-app state, config, CLI, test helper."""

from __future__ import annotations

import json
import threading

import pytest
from flask import Blueprint, Flask

from flask_sse_sessions import (
    ConfigError,
    SSESessions,
    broadcast_complete,
    broadcast_progress,
    stats,
)
from flask_sse_sessions.testing import iter_events
from tests.harness import FlaskDevServer


def make_app(**config: object) -> Flask:
    """An app whose streams are public (these tests are not about access)."""
    app = Flask(__name__)
    app.config.update(SSE_SESSIONS_REQUIRE_TOKEN=False)
    app.config.update(config)
    return app


def test_registering_creates_the_apps_state_with_defaults() -> None:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test"
    app.register_blueprint(SSESessions(), url_prefix="/api")
    assert "sse_sessions" in app.extensions
    assert app.config["SSE_SESSIONS_REQUIRE_TOKEN"] is None
    assert app.config["SSE_SESSIONS_MAX_STREAM_SECONDS"] == 3600
    assert app.config["SSE_SESSIONS_MAX_CONNECTIONS_PER_USER"] is None
    assert app.config["SSE_SESSIONS_HEARTBEAT_INTERVAL"] == 30
    assert app.config["SSE_SESSIONS_REPLAY_ON_CONNECT"] == "latest"
    assert app.config["SSE_SESSIONS_CORS_ORIGINS"] == []
    rules = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    assert rules["/api/stream/<session_id>"] == "sse_sessions.stream"
    assert rules["/api/stream/<session_id>/latest"] == "sse_sessions.latest"
    assert "/api/sse-sessions.js" in rules
    assert "/api/sse-sessions.mjs" in rules


def test_it_is_a_blueprint_named_sse_sessions() -> None:
    sse = SSESessions()
    assert isinstance(sse, Blueprint)
    assert sse.name == "sse_sessions"


def test_init_app_registers_with_a_prefix() -> None:
    app = make_app()
    SSESessions().init_app(app, url_prefix="/events")
    client = app.test_client()
    with app.app_context():
        broadcast_progress("s", percent=5)
    latest = client.get("/events/stream/s/latest")
    assert latest.status_code == 200 and latest.get_json()["data"]["percent"] == 5
    assert client.get("/stream/s/latest").status_code == 404  # only under the prefix


def test_one_instance_on_two_apps_keeps_state_apart() -> None:
    sse = SSESessions()
    first, second = make_app(), make_app(SSE_SESSIONS_HISTORY_SIZE=5)
    first.register_blueprint(sse)
    second.register_blueprint(sse)
    assert first.extensions["sse_sessions"] is not second.extensions["sse_sessions"]
    assert second.extensions["sse_sessions"].config.history_size == 5
    with first.app_context():
        broadcast_progress("shared-name", {"app": 1})
    assert first.test_client().get("/stream/shared-name/latest").status_code == 200
    assert second.test_client().get("/stream/shared-name/latest").status_code == 404


def test_registering_twice_on_one_app_is_an_error_that_says_so() -> None:
    app = make_app()
    app.register_blueprint(SSESessions())
    with pytest.raises(RuntimeError, match="already registered"):
        app.register_blueprint(SSESessions(), name="again", url_prefix="/again")


def test_nested_in_another_blueprint() -> None:
    app, api = make_app(), Blueprint("api", __name__)
    api.register_blueprint(SSESessions(), url_prefix="/sse")
    app.register_blueprint(api, url_prefix="/api")
    assert app.extensions["sse_sessions"].endpoint_prefix == "api.sse_sessions"
    with app.app_context():
        broadcast_progress("s")
    assert app.test_client().get("/api/sse/stream/s/latest").status_code == 200


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("SSE_SESSIONS_HEARTBEAT_INTERVAL", 0, "number of seconds above 0"),
        ("SSE_SESSIONS_HEARTBEAT_INTERVAL", "30", "number of seconds above 0"),
        ("SSE_SESSIONS_HEARTBEAT_FORMAT", "xml", "'event', 'comment'"),
        ("SSE_SESSIONS_REPLAY_ON_CONNECT", "some", "'latest', 'all', 'none'"),
        ("SSE_SESSIONS_QUEUE_SIZE", 0, "integer of at least 1"),
        ("SSE_SESSIONS_HISTORY_SIZE", 2.5, "integer of at least 1"),
        ("SSE_SESSIONS_MAX_CONNECTIONS_PER_USER", 0, "integer of at least 1"),
        ("SSE_SESSIONS_REQUIRE_TOKEN", "yes", "True or False"),
        ("SSE_SESSIONS_CORS_ORIGINS", "https://a.example", "list of origins"),
        ("SSE_SESSIONS_SESSION_ID_PATTERN", "[", "not a regex"),
        ("SSE_SESSIONS_KEY_PREFIX", "", "non-empty string"),
        ("SSE_SESSIONS_REDIS_URL", "http://127.0.0.1:6379/0", "not a Redis URL"),
        ("SSE_SESSIONS_REDIS_URL", 6379, "non-empty string"),
        ("SSE_SESSIONS_REDIS_OPTIONS", "socket_timeout=1", "dict of keyword arguments"),
    ],
)
def test_bad_config_fails_at_registration_naming_the_key(
    key: str, value: object, match: str
) -> None:
    app = make_app(**{key: value})
    with pytest.raises(ConfigError, match=match) as info:
        app.register_blueprint(SSESessions())
    assert key in str(info.value)


@pytest.mark.parametrize("require_token", [None, True])
def test_a_missing_secret_key_fails_at_registration_when_tokens_can_be_required(
    require_token: bool | None,
) -> None:
    app = make_app(SSE_SESSIONS_REQUIRE_TOKEN=require_token)
    with pytest.raises(ConfigError, match=r"set app.config\['SECRET_KEY'\]") as info:
        app.register_blueprint(SSESessions())
    assert "SSE_SESSIONS_REQUIRE_TOKEN = False" in str(info.value)
    assert "@sse.authorize" in str(info.value)
    assert "sse_sessions" not in app.extensions


def test_no_secret_key_is_needed_when_tokens_cannot_be_required() -> None:
    public = make_app(SSE_SESSIONS_REQUIRE_TOKEN=False)
    public.register_blueprint(SSESessions())
    hooked = make_app(SSE_SESSIONS_REQUIRE_TOKEN=None)
    sse = SSESessions()
    sse.authorize(lambda session_id: True)
    hooked.register_blueprint(sse)
    assert "sse_sessions" in public.extensions and "sse_sessions" in hooked.extensions


def test_float_heartbeat_is_allowed() -> None:
    app = make_app(SSE_SESSIONS_HEARTBEAT_INTERVAL=0.5)
    app.register_blueprint(SSESessions())
    assert app.extensions["sse_sessions"].config.heartbeat_interval == 0.5


def test_iter_events_reads_a_test_client_stream() -> None:
    app = make_app(SSE_SESSIONS_REPLAY_ON_CONNECT="all")
    app.register_blueprint(SSESessions(), url_prefix="/api")
    with app.app_context():
        broadcast_progress("job", percent=50)
        broadcast_complete("job")
    response = app.test_client().get("/api/stream/job", buffered=False)
    events = list(iter_events(response))  # the stream ends after `complete`
    response.close()
    assert [event.json()["type"] for event in events] == ["connected", "progress", "complete"]
    assert events[0].retry == 3000
    assert events[0].id == ""
    assert events[1].id and events[2].id > events[1].id
    with app.app_context():
        assert stats()["connections"] == 0


def test_iter_events_sees_live_events_from_another_thread() -> None:
    app = make_app()
    app.register_blueprint(SSESessions(), url_prefix="/api")
    response = app.test_client().get("/api/stream/live", buffered=False)
    events = iter_events(response)
    assert next(events).json()["type"] == "connected"

    def publish() -> None:
        with app.app_context():
            broadcast_progress("live", step=1)

    threading.Thread(target=publish).start()
    assert next(events).json()["step"] == 1
    response.close()
    with app.app_context():
        assert stats()["connections"] == 0


def test_cli_publish_and_stats() -> None:
    app = make_app()
    app.register_blueprint(SSESessions())
    runner = app.test_cli_runner()
    result = runner.invoke(args=["sse", "publish", "job-1", '{"percent": 10}'])
    assert result.exit_code == 0, result.output
    assert "published to job-1: reached 0" in result.output
    result = runner.invoke(args=["sse", "stats"])
    assert result.exit_code == 0
    assert json.loads(result.output)["stored_sessions"] == 1
    for bad, message in [("[1]", "must be a JSON object"), ("{", "not JSON")]:
        result = runner.invoke(args=["sse", "publish", "job-1", bad])
        assert result.exit_code == 2 and message in result.output
    result = runner.invoke(args=["sse", "publish", "bad id", "{}"])
    assert result.exit_code == 1 and "invalid session id" in result.output


def test_flask_threaded_dev_server_streams_and_cleans_up() -> None:
    with FlaskDevServer() as server, server.stream("dev") as stream:
        assert stream.events(1)[0].json()["type"] == "connected"
        server.publish("dev", {"k": 1})
        (event,) = stream.events(1)
        assert event.json()["k"] == 1 and event.id
        stream.close()
        server.wait_for("connections", 0)
