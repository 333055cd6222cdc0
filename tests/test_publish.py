"""Publishing: what an event looks like, and every way a call can be refused."""

from __future__ import annotations

import json
import logging
import re
import threading
from decimal import Decimal

import pytest
from flask import Flask

from flask_sse_sessions import (
    SSESessions,
    broadcast,
    broadcast_complete,
    broadcast_error,
    broadcast_progress,
    new_session_id,
    stats,
)
from flask_sse_sessions.signals import event_broadcast
from flask_sse_sessions.testing import iter_events


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    app.config["SSE_SESSIONS_MAX_EVENT_BYTES"] = 1000
    app.config["SSE_SESSIONS_REQUIRE_TOKEN"] = False  # about publishing, not access
    app.register_blueprint(SSESessions(), url_prefix="/api")
    return app


@pytest.fixture
def published(app: Flask) -> list[tuple[str, dict[str, object], str]]:
    """Every event the app's bus carries: (session id, decoded JSON, id)."""
    seen: list[tuple[str, dict[str, object], str]] = []

    def record(sender: Flask, session_id: str, event: object) -> None:
        seen.append((session_id, json.loads(event.json), event.id))  # type: ignore[attr-defined]

    event_broadcast.connect(record, sender=app, weak=False)
    yield seen
    event_broadcast.disconnect(record, sender=app)


def test_progress_event_shape(app: Flask, published: list) -> None:
    with app.app_context():
        assert broadcast_progress("job-1", {"percent": 5}, message="working") == 0
    ((session, payload, event_id),) = published
    assert session == "job-1"
    assert list(payload) == ["type", "percent", "message", "timestamp"]
    assert payload["type"] == "progress"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(payload["timestamp"]))
    assert re.fullmatch(r"\d+-\d+", event_id)


def test_type_in_data_wins_for_progress_only(app: Flask, published: list) -> None:
    with app.app_context():
        broadcast_progress("s", {"type": "stage"})
        broadcast_progress("s", type="stage2")
        broadcast("s", "chosen", {"type": "ignored"})
        broadcast_complete("s", {"type": "ignored"})
    assert [p["type"] for _, p, _ in published] == ["stage", "stage2", "chosen", "complete"]


def test_fields_override_data_and_timestamp_is_ours(app: Flask, published: list) -> None:
    with app.app_context():
        broadcast("s", "t", {"a": 1, "b": 1, "timestamp": "mine"}, b=2)
    payload = published[0][1]
    assert (payload["a"], payload["b"]) == (1, 2)
    assert payload["timestamp"] != "mine"
    assert list(payload)[-1] == "timestamp"


def test_error_event_carries_its_message(app: Flask, published: list) -> None:
    with app.app_context():
        broadcast_error("s", "disk full", {"code": 28})
    payload = published[0][1]
    assert (payload["type"], payload["message"], payload["code"]) == ("error", "disk full", 28)


def test_ids_grow_within_a_session(app: Flask, published: list) -> None:
    with app.app_context():
        for _ in range(50):
            broadcast_progress("s")
    keys = [tuple(map(int, event_id.split("-"))) for *_, event_id in published]
    assert keys == sorted(keys)
    assert len(set(keys)) == 50


def _holding_itself() -> dict[str, object]:
    data: dict[str, object] = {}
    data["inner"] = [data]
    return data


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: broadcast_progress("s", {"x": object()}), TypeError, "not JSON serialisable"),
        (lambda: broadcast_progress("s", {"x": Decimal(1)}), TypeError, "not JSON serialisable"),
        (lambda: broadcast_progress("s", [1, 2]), TypeError, "must be a dict"),
        (lambda: broadcast_progress("s", "text"), TypeError, "must be a dict"),
        (lambda: broadcast_progress("s", {"x": float("nan")}), ValueError, "not valid JSON"),
        (lambda: broadcast_progress("s", _holding_itself()), ValueError, "holds itself"),
        (lambda: broadcast_progress("s", {"x": "\ud800"}), ValueError, "not valid Unicode"),
        (lambda: broadcast_progress("s", {"x": "y" * 1000}), ValueError, "MAX_EVENT_BYTES"),
        (lambda: broadcast_progress("bad id"), ValueError, "invalid session id"),
        (lambda: broadcast_progress("a/b"), ValueError, "invalid session id"),
        (lambda: broadcast_progress(""), ValueError, "invalid session id"),
        (lambda: broadcast_progress("x" * 129), ValueError, "invalid session id"),
        (lambda: broadcast_progress(42), ValueError, "invalid session id"),
        (lambda: broadcast("s", "two\nlines"), ValueError, "without CR, LF or NUL"),
        (lambda: broadcast("s", "cr\r"), ValueError, "without CR, LF or NUL"),
        (lambda: broadcast("s", ""), ValueError, "non-empty"),
        (lambda: broadcast("s", 3), TypeError, "must be a string"),
        (lambda: broadcast("s", "heartbeat"), ValueError, "reserved"),
        (lambda: broadcast_progress("s", {"type": "connected"}), ValueError, "reserved"),
        (lambda: broadcast_progress("s", {"type": "a\nb"}), ValueError, "CR, LF or NUL"),
        (lambda: broadcast_error("s", 404), TypeError, "message must be a string"),
    ],
)
def test_bad_input_fails_at_the_call(
    app: Flask, published: list, call: object, error: type[Exception], match: str
) -> None:
    with app.app_context(), pytest.raises(error, match=match):
        call()  # type: ignore[operator]
    assert published == []


def test_size_limit_counts_utf8_bytes(app: Flask) -> None:
    with app.app_context():
        broadcast_progress("s", {"x": "é" * 400})  # 800 bytes of text: fits
        with pytest.raises(ValueError, match="MAX_EVENT_BYTES"):
            broadcast_progress("s", {"x": "é" * 500})  # 1000 bytes of text: does not


@pytest.mark.parametrize(
    "call",
    [
        lambda: broadcast_progress("s"),
        lambda: broadcast("s", "t"),
        lambda: broadcast_complete("s"),
        lambda: broadcast_error("s", "m"),
        stats,
    ],
)
def test_outside_an_app_context_the_error_says_what_to_do(call: object) -> None:
    with pytest.raises(RuntimeError, match=r"with app\.app_context\(\)"):
        call()  # type: ignore[operator]


def test_on_an_app_without_the_blueprint_the_error_names_it() -> None:
    with Flask(__name__).app_context(), pytest.raises(RuntimeError, match="register_blueprint"):
        broadcast_progress("s")


def test_publishing_from_a_background_thread_with_an_app_context(
    app: Flask, published: list
) -> None:
    def job() -> None:
        with app.app_context():
            for percent in (50, 100):
                broadcast_progress("job", percent=percent)
            broadcast_complete("job")

    thread = threading.Thread(target=job)
    thread.start()
    thread.join()
    assert [(p["type"], p.get("percent")) for _, p, _ in published] == [
        ("progress", 50),
        ("progress", 100),
        ("complete", None),
    ]


def test_new_session_id_is_url_safe_and_random() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    for session_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", session_id)  # 22 * 6 = 132 bits


def test_stats_counts_this_apps_connections(app: Flask) -> None:
    with app.app_context():
        assert stats()["connections"] == 0
        assert stats()["sessions"] == 0
        broadcast_progress("s")
        assert stats()["stored_sessions"] == 1


def test_an_observer_that_raises_fails_neither_the_broadcast_nor_the_streams(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: Flask, **kwargs: object) -> None:
        raise RuntimeError("observer bug")

    event_broadcast.connect(broken, sender=app, weak=False)
    response = app.test_client().get("/api/stream/s", buffered=False)
    try:
        events = iter_events(response)
        assert next(events).json()["type"] == "connected"
        with app.app_context(), caplog.at_level(logging.ERROR, "flask_sse_sessions"):
            assert broadcast_progress("s", n=1) == 1  # stored and delivered all the same
            assert broadcast_progress("s", n=2) == 1
        assert [next(events).json()["n"] for _ in range(2)] == [1, 2]
        failures = [r for r in caplog.records if "event_broadcast raised" in r.message]
        assert len(failures) == 2
        assert failures[0].exc_info is not None
    finally:
        event_broadcast.disconnect(broken, sender=app)
        response.close()


def test_a_burst_queued_on_connections_leaves_nothing_for_the_old_generation(
    app: Flask,
) -> None:
    """Events wait on connections until their streams (or the direct writer)
    run, which a burst from one view postpones: what waits must be untracked
    by the collector's young passes, or each burst would push thousands of
    objects into the old generation and set off full collections."""
    import gc

    registry = app.extensions["sse_sessions"].registry
    conns = [registry.open(f"s{index % 5}", None) for index in range(20)]
    gc.collect()
    gc.disable()  # only the passes below, none in between
    try:
        with app.app_context():
            for index in range(200):
                broadcast_progress(f"s{index % 5}", n=index)
        gc.collect(0)
        gc.collect(1)
    finally:
        gc.enable()
    queued = [item for conn in conns for item in conn.pending]
    assert len(queued) == 20 * 40
    assert not any(gc.is_tracked(item) for item in queued)
