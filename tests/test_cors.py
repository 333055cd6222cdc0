"""CORS end to end: only the origins in ``SSE_SESSIONS_CORS_ORIGINS`` may read."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from flask_sse_sessions import new_session_id
from tests.conftest import Server
from tests.rawhttp import RawStream

APP = "https://app.example.com"
ADMIN = "https://admin.example.com"
LISTED = {
    "SSE_SESSIONS_HEARTBEAT_INTERVAL": 60,
    "SSE_SESSIONS_CORS_ORIGINS": [APP, ADMIN + "/"],  # a trailing slash is forgiven
    "SSE_SESSIONS_MAX_CONNECTIONS_PER_SESSION": 1,
}
DENY = {"deny": ["no-entry"]}


def cors_headers(response: RawStream) -> dict[str, str]:
    return {
        name: value for name, value in response.headers.items() if name.startswith("access-control")
    }


def vary(response: RawStream) -> set[str]:
    return {v.strip().lower() for v in response.headers.get("vary", "").split(",") if v.strip()}


def request(
    server: Server, path: str, origin: str | None, method: str = "GET", **headers: str
) -> RawStream:
    if origin is not None:
        headers["Origin"] = origin
    return RawStream(server.port, "/api/stream/" + path, headers, method=method)


def every_answer(server: Server, session_id: str) -> list[tuple[str, str, int]]:
    """(method, path, status) of one request of each kind the blueprint answers."""
    return [
        ("GET", session_id, 200),
        ("GET", session_id, 429),  # the stream above is still open
        ("GET", f"{session_id}/latest", 404),
        ("GET", "no-entry", 403),
        ("GET", "bad%20id", 400),
        ("GET", f"{session_id}?token=forged", 401),
        ("OPTIONS", session_id, 200),
    ]


def test_listed_origins_are_echoed_exactly_with_credentials(serve: Any) -> None:
    server = serve(LISTED, DENY)
    with ExitStack() as opened:
        for origin in (APP, ADMIN):
            for method, path, status in every_answer(server, new_session_id()):
                response = opened.enter_context(request(server, path, origin, method=method))
                assert response.status == status, (method, path)
                expected = {
                    "access-control-allow-origin": origin,
                    "access-control-allow-credentials": "true",
                }
                if method == "OPTIONS":
                    expected |= {
                        "access-control-allow-methods": "GET",
                        "access-control-allow-headers": "Last-Event-ID, Cache-Control",
                        "access-control-max-age": "600",
                    }
                else:
                    # The browser client reads Retry-After of a 429 or 503 with fetch.
                    expected["access-control-expose-headers"] = "Retry-After"
                assert cors_headers(response) == expected, (method, path, status)
                assert "origin" in vary(response), (method, path, status)


OTHER_ORIGINS = [
    None,
    "https://evil.example.com",
    "http://app.example.com",  # another scheme
    "https://app.example.com:8443",  # another port
    "https://app.example.com.evil.example",
    "https://evil.example/https://app.example.com",
    "null",
    "*",
    "",
]


def test_other_origins_get_no_cors_headers(serve: Any) -> None:
    server = serve(LISTED, DENY)
    with ExitStack() as opened:
        for origin in OTHER_ORIGINS:
            for method, path, status in every_answer(server, new_session_id()):
                response = opened.enter_context(request(server, path, origin, method=method))
                assert response.status == status, (origin, method, path)
                assert cors_headers(response) == {}, (origin, method, path)
                # What is allowed depends on Origin, so caches must key on it.
                assert "origin" in vary(response), (origin, method, path)


def test_without_configured_origins_nothing_is_allowed(server: Server, session_id: str) -> None:
    for method in ("GET", "OPTIONS"):
        with request(server, session_id, APP, method=method) as response:
            assert response.status == 200
            assert cors_headers(response) == {}
            assert "vary" not in response.headers


def test_star_allows_any_origin_without_credentials(serve: Any, session_id: str) -> None:
    server = serve({"SSE_SESSIONS_HEARTBEAT_INTERVAL": 60, "SSE_SESSIONS_CORS_ORIGINS": ["*"]})
    for origin in (APP, "https://anyone.example"):
        with request(server, session_id, origin) as response:
            assert response.status == 200
            assert cors_headers(response) == {
                "access-control-allow-origin": "*",
                "access-control-expose-headers": "Retry-After",
            }
            assert "vary" not in response.headers  # the same answer for everyone
        with request(server, session_id, origin, method="OPTIONS") as response:
            assert cors_headers(response) == {
                "access-control-allow-origin": "*",
                "access-control-allow-methods": "GET",
                "access-control-allow-headers": "Last-Event-ID, Cache-Control",
                "access-control-max-age": "600",
            }
    with request(server, session_id, None) as response:
        assert cors_headers(response) == {}
