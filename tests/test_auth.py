"""Who may watch a session, end to end: the authorize hook and signed stream tokens."""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from flask_sse_sessions import new_session_id
from flask_sse_sessions._auth import _SALT
from tests.conftest import Server
from tests.rawhttp import RawStream

SECRET = "end-to-end-test-secret"  # tests/server_app.py's SECRET_KEY

FORBIDDEN = {"error": "forbidden", "message": "You may not watch this session."}
TOKEN_REQUIRED = {
    "error": "token_required",
    "message": "This stream needs the signed URL the page was given.",
}
NOT_VALID = {"error": "invalid_token", "message": "The stream token is not valid."}
OTHER_SESSION = {
    "error": "invalid_token",
    "message": "The stream token was issued for another session or user.",
}
EXPIRED = {
    "error": "invalid_token",
    "message": "The stream token has expired: ask the page for a new one.",
}

REQUIRE_TOKEN = {"SSE_SESSIONS_REQUIRE_TOKEN": True, "SSE_SESSIONS_HEARTBEAT_INTERVAL": 1}


def get(server: Server, path: str, headers: dict[str, str] | None = None) -> RawStream:
    """One raw GET of ``path`` (which includes any query string)."""
    return RawStream(server.port, path, headers)


def assert_error(response: RawStream, status: int, body: dict[str, str]) -> None:
    assert response.status == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == body
    response.close()


def assert_streams(response: RawStream, session_id: str) -> None:
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    (connected,) = response.events(1)
    assert connected.json()["sessionId"] == session_id  # type: ignore[index]
    response.close()


def cookie_of(server: Server, path: str) -> dict[str, str]:
    """POST to a login route and return the ``Cookie`` header its answer sets."""
    response = httpx.post(server.url + path, timeout=10)
    assert response.status_code == 200
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in response.cookies.items())}


def url_for_session(server: Server, session_id: str, headers: dict[str, str] | None = None) -> str:
    """``stream_url(session_id)`` as the app renders it (in a request with ``headers``)."""
    response = httpx.get(f"{server.url}/url/{session_id}", headers=headers, timeout=10)
    assert response.status_code == 200
    return str(response.json()["url"])


def token_of(url: str) -> str:
    (token,) = parse_qs(urlsplit(url).query)["token"]
    return token


def signed_at(token: str) -> float:
    _, when = URLSafeTimedSerializer(SECRET, salt=_SALT).loads(token, return_timestamp=True)
    return float(when.timestamp())


def forge(value: Any, age: int) -> str:
    """A correctly signed token for ``value``, as if issued ``age`` seconds ago."""

    class Earlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age

    return URLSafeTimedSerializer(SECRET, salt=_SALT, signer=Earlier).dumps(value)


def early_in_a_second() -> None:
    """Wait until the clock's fraction of a second is below 0.3."""
    deadline = time.monotonic() + 2
    while time.time() % 1 > 0.3 and time.monotonic() < deadline:
        time.sleep(0.02)


# -- the authorize hook -----------------------------------------------------------


def test_authorize_false_answers_403_on_stream_and_latest(serve: Any, session_id: str) -> None:
    server = serve({"SSE_SESSIONS_HEARTBEAT_INTERVAL": 1}, {"deny": ["no-entry"]})
    assert_error(server.stream("no-entry"), 403, FORBIDDEN)
    assert_error(server.stream("no-entry/latest"), 403, FORBIDDEN)
    assert_streams(server.stream(session_id), session_id)
    assert_error(
        server.stream(f"{session_id}/latest"),
        404,
        {"error": "not_found", "message": "This session has no events yet."},
    )
    # Refused requests never held a connection slot.
    server.wait_for("connections", 0)


def test_flask_login_current_user_watches_own_sessions_only(serve: Any) -> None:
    server = serve({"SSE_SESSIONS_HEARTBEAT_INTERVAL": 1}, {"login": True})
    alice_session, bob_session = "alice_" + new_session_id(), "bob_" + new_session_id()
    server.publish(alice_session, {"secret": "alice's"})
    alice = cookie_of(server, "/login/alice")

    for path in (alice_session, f"{alice_session}/latest"):
        assert_error(server.stream(path), 403, FORBIDDEN)  # anonymous
    for path in (bob_session, f"{bob_session}/latest"):
        assert_error(server.stream(path, alice), 403, FORBIDDEN)

    assert_streams(server.stream(alice_session, alice), alice_session)
    with server.stream(f"{alice_session}/latest", alice) as latest:
        assert latest.status == 200
        assert latest.json()["data"]["secret"] == "alice's"  # type: ignore[index]


def test_flask_session_cookie_watches_own_sessions_only(serve: Any) -> None:
    server = serve({"SSE_SESSIONS_HEARTBEAT_INTERVAL": 1}, {"session_cookie": True})
    alice_session = "alice_" + new_session_id()
    alice = cookie_of(server, "/session-login/alice")
    bob = cookie_of(server, "/session-login/bob")
    assert_error(server.stream(alice_session), 403, FORBIDDEN)
    assert_error(server.stream(alice_session, bob), 403, FORBIDDEN)
    assert_error(server.stream(f"{alice_session}/latest", bob), 403, FORBIDDEN)
    # A cookie whose signature does not match is no session at all.
    forged = {"Cookie": alice["Cookie"][:-2] + "xx"}
    assert_error(server.stream(alice_session, forged), 403, FORBIDDEN)
    assert_streams(server.stream(alice_session, alice), alice_session)


# -- signed stream tokens ---------------------------------------------------------


def test_required_token_admits_its_session_on_stream_and_latest(
    serve: Any, session_id: str
) -> None:
    server = serve(REQUIRE_TOKEN)
    url = url_for_session(server, session_id)
    assert url.startswith(f"/api/stream/{session_id}?token=")
    assert_streams(get(server, url), session_id)
    latest = url.replace(f"/{session_id}?", f"/{session_id}/latest?")
    assert_error(
        get(server, latest),
        404,
        {"error": "not_found", "message": "This session has no events yet."},
    )
    server.publish(session_id, {"step": 1})
    with get(server, latest) as response:
        assert response.status == 200
        assert response.json()["data"]["step"] == 1  # type: ignore[index]


def test_required_token_missing_or_empty_is_401(serve: Any, session_id: str) -> None:
    server = serve(REQUIRE_TOKEN)
    for path in (session_id, f"{session_id}?token=", f"{session_id}/latest"):
        assert_error(server.stream(path), 401, TOKEN_REQUIRED)
    server.wait_for("connections", 0)


def test_token_of_another_session_is_401(serve: Any, session_id: str) -> None:
    server = serve(REQUIRE_TOKEN)
    token = token_of(url_for_session(server, session_id))
    other = new_session_id()
    assert_error(server.stream(f"{other}?token={token}"), 401, OTHER_SESSION)
    assert_error(server.stream(f"{other}/latest?token={token}"), 401, OTHER_SESSION)


def test_tampered_tokens_are_401(serve: Any, session_id: str) -> None:
    server = serve(REQUIRE_TOKEN)
    token = token_of(url_for_session(server, session_id))
    payload, timestamp, signature = token.split(".")
    other = base64.urlsafe_b64encode(json.dumps([new_session_id(), None]).encode())
    # The first character: all six of its bits are the signature's (the
    # last one's low bits are padding, and flipping those changes nothing).
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    for bad in (
        f"{other.decode().rstrip('=')}.{timestamp}.{signature}",  # another payload
        f"{payload}.{timestamp}.{flipped}",  # another signature
        f"{payload}.{timestamp}",  # no signature
        "not-a-token",
        "A" * 3000,
        # Signed with the same secret key but for something else: a Flask
        # session cookie (another salt) must not open a stream.
        session_cookie(),
    ):
        assert_error(server.stream(f"{session_id}?token={bad}"), 401, NOT_VALID)


def session_cookie() -> str:
    """A Flask session cookie as the test app would sign it."""
    from flask import Flask

    app = Flask(__name__)
    app.secret_key = SECRET
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    assert serializer is not None
    return str(serializer.dumps({"user": "x"}))


def test_expired_token_is_401(serve: Any, session_id: str) -> None:
    server = serve(REQUIRE_TOKEN)
    old = forge([session_id, None], age=3601)
    assert_error(server.stream(f"{session_id}?token={old}"), 401, EXPIRED)
    assert_error(server.stream(f"{session_id}/latest?token={old}"), 401, EXPIRED)
    assert_streams(server.stream(f"{session_id}?token={forge([session_id, None], 10)}"), session_id)


def test_token_at_the_end_of_its_life_is_401_not_an_empty_stream(
    serve: Any, session_id: str
) -> None:
    # Regression: itsdangerous counts whole seconds, so a token whose age is
    # exactly max_age passed its check while the stream's deadline had already
    # gone: the client got `connected` and the replay, then an ended stream.
    server = serve(REQUIRE_TOKEN)
    server.publish(session_id, {"secret": 1})
    early_in_a_second()  # so that the age is exactly 3600 when it arrives
    token = forge([session_id, None], age=3600)
    assert_error(server.stream(f"{session_id}?token={token}"), 401, EXPIRED)
    assert_error(server.stream(f"{session_id}/latest?token={token}"), 401, EXPIRED)


def test_a_given_token_is_checked_even_when_not_required(server: Server, session_id: str) -> None:
    assert_error(server.stream(f"{session_id}?token=not-a-token"), 401, NOT_VALID)
    token = token_of(url_for_session(server, session_id))
    assert_streams(server.stream(f"{session_id}?token={token}"), session_id)
    assert_error(server.stream(f"{new_session_id()}?token={token}"), 401, OTHER_SESSION)


def test_token_is_bound_to_the_user_it_was_issued_to(serve: Any) -> None:
    server = serve(REQUIRE_TOKEN, {"login": True})
    alice_session = "alice_" + new_session_id()
    alice = cookie_of(server, "/login/alice")
    bob = cookie_of(server, "/login/bob")
    url = url_for_session(server, alice_session, alice)
    assert_streams(get(server, url, alice), alice_session)
    # Bob (or anyone without Alice's login) holding her URL gets nothing.
    assert_error(get(server, url, bob), 401, OTHER_SESSION)
    assert_error(get(server, url), 401, OTHER_SESSION)
    # A valid token does not bypass the authorize hook: Bob's own token for
    # Alice's session is signed, but Alice's session is not his.
    bobs_url = url_for_session(server, alice_session, bob)
    assert_error(get(server, bobs_url, bob), 403, FORBIDDEN)


def test_an_open_stream_ends_when_its_token_expires(own_server: Any, session_id: str) -> None:
    server = own_server(
        {
            "SSE_SESSIONS_REQUIRE_TOKEN": True,
            "SSE_SESSIONS_TOKEN_MAX_AGE": 2,
            "SSE_SESSIONS_HEARTBEAT_INTERVAL": 0.4,
        }
    )
    early_in_a_second()  # tokens count whole seconds: this one lives 1.7 s or more
    url = url_for_session(server, session_id)
    expires = signed_at(token_of(url)) + 2
    stream = get(server, url)
    assert stream.status == 200
    stream.read_to_end(timeout=30)
    ended = time.time()
    # It lived for the token's life (heartbeats kept it busy) and no longer.
    assert ended >= expires - 0.25, (ended, expires)
    assert stream.body.count(b'"type":"heartbeat"') >= 2
    stream.close()
    server.wait_for("connections", 0)
    # EventSource reconnects with the same URL at once: that is refused now.
    assert_error(get(server, url), 401, EXPIRED)
    server.publish(session_id, {"after": "expiry"})
    assert_error(get(server, url.replace("?", "/latest?")), 401, EXPIRED)


# -- closed unless allowed --------------------------------------------------------

LIBRARY_DEFAULTS = {"library_defaults": True}  # the test app's public streams: off


def test_by_default_a_stream_or_latest_without_a_valid_token_is_401(
    serve: Any, session_id: str
) -> None:
    server = serve({"SSE_SESSIONS_HEARTBEAT_INTERVAL": 1}, LIBRARY_DEFAULTS)
    server.publish(session_id, {"secret": 1})
    for path in (session_id, f"{session_id}/latest"):
        assert_error(server.stream(path), 401, TOKEN_REQUIRED)
        assert_error(server.stream(f"{path}?token=forged"), 401, NOT_VALID)
    url = url_for_session(server, session_id)
    assert_streams(get(server, url), session_id)
    with get(server, url.replace("?", "/latest?")) as latest:
        assert latest.status == 200
        assert latest.json()["data"]["secret"] == 1  # type: ignore[index]
    # Taking the token off a signed URL takes its access with it.
    assert_error(get(server, url.partition("?")[0]), 401, TOKEN_REQUIRED)
    server.wait_for("connections", 0)


def test_by_default_an_authorize_hook_admits_streams_without_a_token(
    serve: Any, session_id: str
) -> None:
    server = serve({"SSE_SESSIONS_HEARTBEAT_INTERVAL": 1}, {**LIBRARY_DEFAULTS, "deny": ["no"]})
    assert_streams(server.stream(session_id), session_id)
    server.publish(session_id, {"step": 1})
    with server.stream(f"{session_id}/latest") as latest:
        assert latest.status == 200
    assert_error(server.stream("no"), 403, FORBIDDEN)
    assert_error(server.stream("no/latest"), 403, FORBIDDEN)
    # A token that is given is still checked.
    assert_error(server.stream(f"{session_id}?token=forged"), 401, NOT_VALID)


def test_public_streams_only_by_explicit_setting(serve: Any, session_id: str) -> None:
    public = serve({"SSE_SESSIONS_REQUIRE_TOKEN": False}, LIBRARY_DEFAULTS)
    assert_streams(public.stream(session_id), session_id)
    # True needs a token even from an app with an authorize hook.
    strict = serve({"SSE_SESSIONS_REQUIRE_TOKEN": True}, {**LIBRARY_DEFAULTS, "deny": ["no"]})
    assert_error(strict.stream(session_id), 401, TOKEN_REQUIRED)
    assert_streams(get(strict, url_for_session(strict, session_id)), session_id)


def test_an_app_that_could_require_tokens_without_a_secret_key_does_not_start(
    own_server: Any,
) -> None:
    with pytest.raises(RuntimeError, match=r"ConfigError: .*set app.config\['SECRET_KEY'\]"):
        own_server({}, {**LIBRARY_DEFAULTS, "no_secret_key": True})


def test_a_token_on_a_public_app_without_a_secret_key_is_401_json(
    serve: Any, session_id: str
) -> None:
    # Regression: the token check met a RuntimeError, an HTML 500.
    server = serve({"SSE_SESSIONS_REQUIRE_TOKEN": False}, {"no_secret_key": True})
    assert_error(server.stream(f"{session_id}?token=x"), 401, NOT_VALID)
    assert_error(server.stream(f"{session_id}/latest?token=x"), 401, NOT_VALID)
    assert_streams(server.stream(session_id), session_id)


def payload_text(token: str) -> str:
    """The readable part of a token: its base64 JSON payload, decoded."""
    payload = token.split(".")[0]
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()


def test_a_tokens_text_does_not_contain_the_user(serve: Any, session_id: str) -> None:
    server = serve(REQUIRE_TOKEN, {"identify_by_header": True})
    alice = {"X-User": "alice.liddell@example.com"}
    url = url_for_session(server, session_id, alice)
    token = token_of(url)
    decoded = payload_text(token)
    for text in (url, token, decoded):
        for part in ("alice", "liddell", "example"):
            assert part not in text.lower()
    value = json.loads(decoded)
    assert value[0] == session_id and isinstance(value[1], str)
    assert_streams(get(server, url, alice), session_id)
    assert_error(get(server, url, {"X-User": "bob@example.com"}), 401, OTHER_SESSION)
    assert_error(get(server, url), 401, OTHER_SESSION)
    # The same user gets the same binding in a new token.
    again = token_of(url_for_session(server, session_id, alice))
    assert json.loads(payload_text(again))[1] == value[1]
