"""Connection limits end to end: per process, per session, per user; 429 with
Retry-After; every slot counted exactly and freed when its connection ends."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from flask import Flask

from flask_sse_sessions import SSESessions, new_session_id, stats
from flask_sse_sessions.signals import connection_opened
from tests.conftest import Server
from tests.rawhttp import RawStream

QUIET = {"SSE_SESSIONS_HEARTBEAT_INTERVAL": 60}  # only the hang-up watcher notices closes


def limit_error(limit: int, scope: str) -> dict[str, str]:
    return {
        "error": "too_many_connections",
        "message": f"The limit of {limit} connections per {scope} is reached.",
    }


def assert_refused(response: RawStream, limit: int, scope: str, retry_after: str = "3") -> None:
    with response:
        assert response.status == 429
        assert response.headers["content-type"] == "application/json"
        assert response.headers["retry-after"] == retry_after
        assert response.json() == limit_error(limit, scope)


def open_streams(
    stack: ExitStack, server: Server, path: str, count: int, headers: dict[str, str] | None = None
) -> list[RawStream]:
    streams = []
    for _ in range(count):
        stream = stack.enter_context(server.stream(path, headers))
        assert stream.status == 200
        stream.events(1)
        streams.append(stream)
    return streams


def test_per_process_limit(serve: Any) -> None:
    server = serve({**QUIET, "SSE_SESSIONS_MAX_CONNECTIONS": 3})
    server.wait_for("connections", 0)
    with ExitStack() as stack:
        first, *_ = open_streams(stack, server, new_session_id(), 2)
        open_streams(stack, server, new_session_id(), 1)
        assert_refused(server.stream(new_session_id()), 3, "process")
        first.close()
        server.wait_for("connections", 2)
        open_streams(stack, server, new_session_id(), 1)
        assert_refused(server.stream(new_session_id()), 3, "process")


def test_per_session_limit_with_retry_after_from_retry_ms(serve: Any, session_id: str) -> None:
    server = serve(
        {**QUIET, "SSE_SESSIONS_MAX_CONNECTIONS_PER_SESSION": 2, "SSE_SESSIONS_RETRY_MS": 1500}
    )
    with ExitStack() as stack:
        first, _ = open_streams(stack, server, session_id, 2)
        assert_refused(server.stream(session_id), 2, "session", retry_after="2")
        open_streams(stack, server, new_session_id(), 2)  # other sessions are not affected
        first.close()
        server.wait_for("connections", 3)
        open_streams(stack, server, session_id, 1)
        assert_refused(server.stream(session_id), 2, "session", retry_after="2")


def test_per_user_limit_by_identify_hook(serve: Any) -> None:
    server = serve(
        {**QUIET, "SSE_SESSIONS_MAX_CONNECTIONS_PER_USER": 2}, {"identify_by_header": True}
    )
    alice, bob = {"X-User": "alice"}, {"X-User": "bob"}
    with ExitStack() as stack:
        first, _ = open_streams(stack, server, new_session_id(), 2, alice)
        assert_refused(server.stream(new_session_id(), alice), 2, "user")
        open_streams(stack, server, new_session_id(), 2, bob)
        assert server.stats()["users"] == 2
        first.close()
        server.wait_for("connections", 3)
        open_streams(stack, server, new_session_id(), 1, alice)
        assert_refused(server.stream(new_session_id(), alice), 2, "user")


def test_per_user_limit_defaults_to_the_remote_address(serve: Any) -> None:
    server = serve({**QUIET, "SSE_SESSIONS_MAX_CONNECTIONS_PER_USER": 1})
    with ExitStack() as stack:
        open_streams(stack, server, new_session_id(), 1, {"X-Forwarded-For": "203.0.113.1"})
        # Without ProxyFix the app does not trust X-Forwarded-For: a client
        # cannot escape its limit by claiming to be someone else.
        assert_refused(
            server.stream(new_session_id(), {"X-Forwarded-For": "203.0.113.2"}), 1, "user"
        )
        assert_refused(server.stream(new_session_id()), 1, "user")
    log = server.log(0)
    assert log.count("a stream request came through a proxy (it has X-Forwarded-For)") == 1


def test_per_user_limit_honours_the_apps_proxy_fix(serve: Any) -> None:
    server = serve({**QUIET, "SSE_SESSIONS_MAX_CONNECTIONS_PER_USER": 1}, {"proxy_fix": True})
    first = {"X-Forwarded-For": "203.0.113.1"}
    with ExitStack() as stack:
        open_streams(stack, server, new_session_id(), 1, first)
        assert_refused(server.stream(new_session_id(), first), 1, "user")
        open_streams(stack, server, new_session_id(), 1, {"X-Forwarded-For": "203.0.113.2"})
        assert server.stats()["users"] == 2
    assert "through a proxy" not in server.log(0)


def test_slots_are_counted_exactly_over_many_opens_and_closes(serve: Any) -> None:
    server = serve({**QUIET, "SSE_SESSIONS_MAX_CONNECTIONS": 3})
    server.wait_for("connections", 0)
    for _ in range(4):
        with ExitStack() as stack:
            open_streams(stack, server, new_session_id(), 3)
            assert_refused(server.stream(new_session_id()), 3, "process")
        server.wait_for("connections", 0)
    assert server.stats()["users"] == 0
    assert server.stats()["sessions"] == 0


def test_refused_and_bodiless_requests_take_no_slot(serve: Any, session_id: str) -> None:
    server = serve({**QUIET, "SSE_SESSIONS_MAX_CONNECTIONS": 3})
    server.wait_for("connections", 0)
    for path, status in (
        ("bad%20id", 400),
        (f"{session_id}?token=forged", 401),
        (f"{session_id}?lastEventId=nonsense", 400),
        (f"{session_id}/latest", 404),
    ):
        for _ in range(5):
            with server.stream(path) as response:
                assert response.status == status
    for _ in range(5):
        # HEAD gets the stream's headers and no body: its slot is freed at once.
        with RawStream(server.port, f"/api/stream/{session_id}", method="HEAD") as head:
            assert head.status == 200
            assert head.headers["content-type"] == "text/event-stream; charset=utf-8"
    server.wait_for("connections", 0)
    with ExitStack() as stack:
        open_streams(stack, server, session_id, 3)


def test_streams_ended_by_the_server_free_their_slots(serve: Any, session_id: str) -> None:
    server = serve({**QUIET, "SSE_SESSIONS_MAX_CONNECTIONS": 3})
    server.wait_for("connections", 0)
    with ExitStack() as stack:
        streams = open_streams(stack, server, session_id, 3)
        server.publish(session_id, type="complete")
        for stream in streams:
            stream.read_to_end()
        # The clients keep their sockets (keep-alive); the slots are free anyway.
        server.wait_for("connections", 0)
        open_streams(stack, server, new_session_id(), 3)


def test_a_failing_connection_opened_receiver_takes_no_slot() -> None:
    # Regression: the slot was taken before the signal was sent, and a receiver
    # that raised (the app's metrics, say) left it taken for good.
    app = Flask(__name__)
    app.config.update(SSE_SESSIONS_MAX_CONNECTIONS=1, SSE_SESSIONS_REQUIRE_TOKEN=False)
    SSESessions().init_app(app, url_prefix="/api")

    def broken(sender: Flask, **kwargs: Any) -> None:
        raise RuntimeError("metrics are down")

    client = app.test_client()
    with connection_opened.connected_to(broken, app):
        for _ in range(2):
            assert client.get("/api/stream/abc").status_code == 500
    with app.app_context():
        assert stats()["connections"] == 0
    response = client.get("/api/stream/abc", buffered=False)
    assert response.status_code == 200
    response.close()


def test_an_after_request_that_raises_frees_the_slot() -> None:
    app = Flask(__name__)
    app.config["SSE_SESSIONS_REQUIRE_TOKEN"] = False
    SSESessions().init_app(app, url_prefix="/api")

    @app.after_request
    def broken(response: Any) -> Any:
        raise RuntimeError("the app's own after_request failed")

    assert app.test_client().get("/api/stream/abc").status_code == 500
    with app.app_context():
        assert stats()["connections"] == 0


def test_a_client_that_sends_bytes_while_streaming_is_cut_and_frees_its_slot(
    own_server: Any, session_id: str
) -> None:
    server = own_server(QUIET)  # its own: the slot may stay taken
    with server.stream(session_id) as stream:
        assert stream.status == 200
        server.wait_for("connections", 1)
        stream.send(b"x")  # the stream is cut at once
        # By the watcher: the next heartbeat is 60 s away.
        server.wait_for("connections", 0, timeout=30)
        stream.read_to_end(timeout=30)


# -- the default limits and the keys they count under ----------------------------


def test_an_identified_user_is_stopped_by_the_default_limit_while_others_connect(
    own_server: Any,
) -> None:
    server = own_server(
        {**QUIET, "SSE_SESSIONS_REQUIRE_TOKEN": False}, {"identify_by_header": True}
    )
    alice, bob = {"X-User": "alice"}, {"X-User": "bob"}
    with ExitStack() as stack:
        open_streams(stack, server, new_session_id(), 32, alice)
        for _ in range(3):
            assert_refused(server.stream(new_session_id(), alice), 32, "user")
        open_streams(stack, server, new_session_id(), 2, bob)
        # Plain addresses have no default limit: an office behind one NAT
        # address, or a load test from one host.
        open_streams(stack, server, new_session_id(), 40)
        assert server.stats()["connections"] == 74


def test_a_user_named_like_an_address_does_not_share_its_slots(serve: Any) -> None:
    server = serve(
        {**QUIET, "SSE_SESSIONS_MAX_CONNECTIONS_PER_USER": 1}, {"identify_by_header": True}
    )
    looks_like_the_address = {"X-User": "127.0.0.1"}
    with ExitStack() as stack:
        open_streams(stack, server, new_session_id(), 1)  # the address 127.0.0.1
        open_streams(stack, server, new_session_id(), 1, looks_like_the_address)
        assert_refused(server.stream(new_session_id()), 1, "user")
        assert_refused(server.stream(new_session_id(), looks_like_the_address), 1, "user")
        assert server.stats()["users"] == 2


def test_ipv6_clients_are_counted_per_64_network(serve: Any) -> None:
    server = serve({**QUIET, "SSE_SESSIONS_MAX_CONNECTIONS_PER_USER": 2}, {"proxy_fix": True})

    def client(address: str) -> dict[str, str]:
        return {"X-Forwarded-For": address}

    with ExitStack() as stack:
        open_streams(stack, server, new_session_id(), 1, client("2001:db8:1:2::1"))
        open_streams(stack, server, new_session_id(), 1, client("2001:db8:1:2:ffff:0:0:9"))
        # A third address of the same /64 is the same client.
        assert_refused(server.stream(new_session_id(), client("2001:db8:1:2::abcd")), 2, "user")
        open_streams(stack, server, new_session_id(), 2, client("2001:db8:1:3::1"))
        assert_refused(server.stream(new_session_id(), client("2001:db8:1:3::2")), 2, "user")
        # An IPv4 client seen as an IPv4-mapped IPv6 address is that IPv4 client.
        open_streams(stack, server, new_session_id(), 2, client("198.51.100.7"))
        assert_refused(server.stream(new_session_id(), client("::ffff:198.51.100.7")), 2, "user")
        assert server.stats()["users"] == 3


def test_requests_without_an_address_share_no_slot_and_are_logged_once(
    own_server: Any, tmp_path: Any
) -> None:
    path = str(tmp_path / "gunicorn.sock")
    server = own_server(
        {**QUIET, "SSE_SESSIONS_MAX_CONNECTIONS_PER_USER": 1}, extra_args=("-b", f"unix:{path}")
    )
    with ExitStack() as unix:
        for _ in range(3):
            stream = unix.enter_context(RawStream(path, f"/api/stream/{new_session_id()}"))
            assert stream.status == 200
        server.wait_for("connections", 3)
        assert server.stats()["users"] == 0  # counted under no key
        with ExitStack() as stack:  # TCP clients keep their per-address limit
            open_streams(stack, server, new_session_id(), 1)
            assert_refused(server.stream(new_session_id()), 1, "user")
    log = server.log(0).rpartition("Starting gunicorn")[2]  # this server's own
    assert log.count("a stream request came without a client address") == 1, log[-3000:]
